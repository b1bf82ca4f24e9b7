"""Redis Cluster errors as the worker sees them: which ones pass (a slot moving, a node or
the whole cluster down) and are waited out, and which are bugs. redis-py's cluster client
raises some of them outside `redis.RedisError`, and gives up on a moving slot with a
generic `ClusterError("TTL exhausted.")`."""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ClusterError,
    ConnectionError,
    MovedError,
    RedisClusterException,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)

from streamdrift.faults import classify
from streamdrift.store.client import fault_of


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TryAgainError("Multiple keys request during rehashing of slot"), "redis_cluster_moving"),
        (ClusterError("TTL exhausted."), "redis_cluster_moving"),
        (AskError("1035 127.0.0.1:7001"), "redis_cluster_moving"),
        (MovedError("1035 127.0.0.1:7001"), "redis_cluster_moving"),
        (ClusterDownError("The cluster is down"), "redis_cluster_down"),
        (SlotNotCoveredError('Slot "1035" is not covered by the cluster.'), "redis_cluster_down"),
        (
            RedisClusterException("All slots are not covered after query all startup_nodes."),
            "redis_cluster_down",
        ),
        (
            RedisClusterException(
                "Redis Cluster cannot be connected. Please provide at least one reachable node"
            ),
            "redis_unreachable",
        ),
        (
            RedisClusterException("startup_nodes could not agree on a valid slots cache"),
            "redis_cluster_moving",
        ),
        (ConnectionError("Error 111 connecting to 127.0.0.1:7001"), "redis_unreachable"),
    ],
)
def test_cluster_faults_are_waited_out(error: Exception, code: str) -> None:
    fault = fault_of(error)
    assert fault is not None and fault.code == code
    assert classify(error) == fault


@pytest.mark.parametrize(
    "error",
    [
        RedisClusterException("Too many targets for command ('GET', 'a')"),
        RedisClusterException("No way to dispatch this command to Redis Cluster."),
        ResponseError("CROSSSLOT Keys in request don't hash to the same slot"),
        ResponseError("ERR Error running script: attempt to compare nil with number"),
    ],
)
def test_cluster_client_mistakes_are_bugs(error: Exception) -> None:
    assert fault_of(error) is None
    assert classify(error) is None


def test_a_worker_started_before_its_cluster_waits_for_it():
    """The cluster client reads the slot map as it is made: with no node answering, the
    worker waits (one line), it does not exit with an error."""
    import orjson

    from streamdrift.embedded import free_port
    from tests.unit.test_secrets import run_cli

    a, b = free_port(), free_port()  # bound and released: nothing listens there
    res = run_cli(
        "worker",
        "--max-seconds",
        "3",
        STREAMDRIFT_REDIS_URL=f"redis+cluster://127.0.0.1:{a},127.0.0.1:{b}",
        STREAMDRIFT_METRICS_PORT="-1",
    )
    assert res.returncode == 0, res.stderr
    logs = [orjson.loads(x) for x in res.stderr.splitlines() if x.startswith("{")]
    assert [e["message"].split(":")[0] for e in logs] == ["waiting for redis"]
    assert logs[0]["fault"] == "redis_unreachable"
    assert f"127.0.0.1:{a}" in logs[0]["message"] or f"127.0.0.1:{b}" in logs[0]["message"]
