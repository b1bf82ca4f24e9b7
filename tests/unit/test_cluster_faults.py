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
