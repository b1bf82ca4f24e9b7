"""Connecting to Redis (one server or a Redis Cluster), loading the Lua scripts, and
telling a Redis fault that passes from a mistake.

The clients retry nothing themselves (redis-py 8 would retry a command ten times with
backoff, invisibly): the worker owns fault handling, because after a fault it must
decide where to resume reading Kafka, and only Redis's fences can tell it. The cluster
client alone retries a little (3 times), since its retry is what re-reads the slot map
after a node failed; it follows MOVED and ASK, and retries TRYAGAIN for ~0.4 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException, SlotNotCoveredError
from redis.retry import Retry

from streamdrift.errors import ConfigError, ConnectionProblem

#: a connection may take this long to open, and a reply this long to arrive: a frozen
#: Redis is noticed within it and the worker pauses its partitions (a big batch's apply
#: takes well under a second)
CONNECT_TIMEOUT = 5.0
REPLY_TIMEOUT = 5.0

RedisClient = redis.Redis | RedisCluster

#: what a client may raise when Redis fails: redis-py's cluster client raises some of its
#: errors (no node reachable, a slot no node serves) outside `redis.RedisError`
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)

CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def _cluster(url: str, **options: Any) -> RedisCluster:
    """`redis+cluster://[user:password@]host:port[,host:port...][?option=value]`: the
    seed nodes of a Redis Cluster (`rediss+cluster://` for TLS)."""
    scheme, _, rest = url.partition("://")
    tls = CLUSTER_SCHEMES[scheme.lower()]
    userinfo, at, hosts = rest.rpartition("@")
    if not at:
        userinfo, hosts = "", rest
    hosts, _, query = hosts.partition("?")
    hosts = hosts.rstrip("/")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    nodes = []
    for hp in hosts.split(","):
        host, _, port = hp.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(
                f"Redis Cluster node '{hp}' is not host:port",
                "write STREAMDRIFT_REDIS_URL as redis+cluster://host:port[,host:port...]",
            )
        nodes.append(ClusterNode(host, int(port)))  # type: ignore[no-untyped-call]
    extra: dict[str, Any] = dict(parse_qsl(query))
    if tls:
        extra["ssl"] = True
    return RedisCluster(
        startup_nodes=nodes,
        username=unquote(username) or None,
        password=unquote(password) or None,
        retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3),
        **extra,
        **options,
    )


def connect(url: str, timeout: float = REPLY_TIMEOUT) -> RedisClient:
    """A client for `url`: `redis://`, `rediss://`, `unix://`, or a cluster's
    `redis+cluster://host:port,...`. Nothing is sent until the first command, except to a
    cluster, whose client reads the slot map from a seed node at once."""
    options: dict[str, Any] = {
        "socket_connect_timeout": min(CONNECT_TIMEOUT, timeout),
        "socket_timeout": timeout,
    }
    try:
        if is_cluster_url(url):
            return _cluster(url, **options)
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"unknown scheme '{scheme}'")
        return redis.Redis.from_url(
            url, retry=Retry(NoBackoff(), 0), health_check_interval=30, **options
        )
    except (ValueError, redis.RedisError, RedisClusterException) as e:
        # the cluster client reads the slot map from a seed node as it is made
        if isinstance(e, redis.ConnectionError | RedisClusterException):
            raise ConnectionProblem(
                f"cannot reach Redis Cluster: {e}", "start Redis or fix STREAMDRIFT_REDIS_URL"
            ) from None
        raise ConfigError(
            f"STREAMDRIFT_REDIS_URL is not a Redis URL: {e}",
            "use redis://host:port/db, rediss://..., unix:///path or "
            "redis+cluster://host:port[,host:port...]",
        ) from None


def text(value: Any) -> str:
    """A reply as text (the clients return bytes; typing says bytes or str)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def text_hash(raw: Any) -> dict[str, str]:
    """A hash reply (HGETALL) as text."""
    return {text(k): text(v) for k, v in raw.items()}


def int_hash(raw: Any) -> dict[str, int]:
    """A hash reply whose values are counts or offsets."""
    return {text(k): int(v) for k, v in raw.items()}


def lua(name: str) -> str:
    """The source of `store/lua/<name>.lua`."""
    return (files("streamdrift.store") / "lua" / f"{name}.lua").read_text()


# ---- faults ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Fault:
    """A condition to wait out: `code` for metrics, `reason` for /readyz and the log,
    `fix` for people."""

    code: str
    reason: str
    fix: str

    def __str__(self) -> str:
        return f"{self.reason} ({self.fix})"


#: Redis error replies that pass: the server is full, a read-only replica, loading its
#: data, busy with a long script, or its cluster is moving slots
_TRANSIENT_REPLIES = {
    "OOM": Fault(
        "redis_oom", "redis out of memory", "raise maxmemory, or shorten retention_seconds"
    ),
    "READONLY": Fault(
        "redis_readonly",
        "redis is a read-only replica",
        "point STREAMDRIFT_REDIS_URL at the primary",
    ),
    "LOADING": Fault("redis_loading", "redis is loading its data", "wait for it"),
    "BUSY": Fault("redis_busy", "redis is busy running a script", "wait, or SCRIPT KILL"),
    "MASTERDOWN": Fault("redis_failover", "redis primary is down", "wait for the failover"),
    "TRYAGAIN": Fault(
        "redis_cluster_moving", "redis cluster is moving a slot", "wait for the resharding"
    ),
    "CLUSTERDOWN": Fault("redis_cluster_down", "redis cluster is down", "bring the cluster back"),
    "MOVED": Fault("redis_cluster_moving", "redis cluster moved a slot", "the client follows it"),
    "ASK": Fault("redis_cluster_moving", "redis cluster is moving a slot", "the client follows it"),
    "NOAUTH": Fault(
        "redis_auth", "redis wants a password", "put the password in STREAMDRIFT_REDIS_URL"
    ),
}


#: redis-py's cluster client errors that are no reply of a server, by what they say
_CLUSTER_CLIENT_FAULTS = {
    # every seed node and every known node refused the connection
    "cannot be connected": Fault(
        "redis_unreachable",
        "no node of the redis cluster answers",
        "start Redis or fix STREAMDRIFT_REDIS_URL",
    ),
    # the nodes' slot maps leave slots without a master (a master failed, no replica)
    "not covered": _TRANSIENT_REPLIES["CLUSTERDOWN"],
    # the nodes disagree on the slot map: a resharding or failover is under way
    "could not agree": _TRANSIENT_REPLIES["TRYAGAIN"],
}


def fault_of(error: BaseException) -> Fault | None:
    """The fault behind `error` when it is one to wait out, else None (a bug)."""
    if isinstance(error, SlotNotCoveredError):
        return _TRANSIENT_REPLIES["CLUSTERDOWN"]
    if isinstance(error, RedisClusterException):
        text = str(error)
        return next((f for k, f in _CLUSTER_CLIENT_FAULTS.items() if k in text), None)
    if isinstance(error, redis.exceptions.ClusterError) and "TTL exhausted" in str(error):
        # the cluster client gave up following redirections or TRYAGAIN: a slot is moving
        return _TRANSIENT_REPLIES["TRYAGAIN"]
    if isinstance(error, redis.TimeoutError):
        return Fault(
            "redis_timeout",
            "redis does not answer (timeout)",
            "check that Redis is running, not frozen",
        )
    if isinstance(error, redis.ConnectionError):
        return Fault(
            "redis_unreachable", "redis unreachable", "start Redis or fix STREAMDRIFT_REDIS_URL"
        )
    if isinstance(error, redis.RedisError):
        text = str(error)
        first = text.split(" ", 1)[0].upper()
        if first in _TRANSIENT_REPLIES:
            return _TRANSIENT_REPLIES[first]
        for name, fault in (
            ("ClusterDownError", _TRANSIENT_REPLIES["CLUSTERDOWN"]),
            ("TryAgainError", _TRANSIENT_REPLIES["TRYAGAIN"]),
            ("MovedError", _TRANSIENT_REPLIES["MOVED"]),
            ("AskError", _TRANSIENT_REPLIES["ASK"]),
            ("ClusterError", _TRANSIENT_REPLIES["CLUSTERDOWN"]),
            ("ReadOnlyError", _TRANSIENT_REPLIES["READONLY"]),
            ("BusyLoadingError", _TRANSIENT_REPLIES["LOADING"]),
            ("OutOfMemoryError", _TRANSIENT_REPLIES["OOM"]),
        ):
            if any(c.__name__ == name for c in type(error).__mro__):
                return fault
        if "command not allowed when used memory" in text:
            return _TRANSIENT_REPLIES["OOM"]
    return None


# ---- the eviction policy ----------------------------------------------------------------
SAFE_POLICY = "noeviction"


def memory_info(client: RedisClient) -> dict[str, dict[str, Any]]:
    """INFO memory of each server: the one, or each primary of a cluster, by name. Asked
    node by node: asked of all primaries at once, the cluster client returns one node's
    reply bare, not keyed by node, when the cluster has a single primary."""
    if isinstance(client, RedisCluster):
        primaries = client.get_primaries()  # type: ignore[no-untyped-call]
        return {n.name: client.info("memory", target_nodes=n) for n in primaries}
    return {"redis": client.info("memory")}


def eviction_policies(client: RedisClient) -> dict[str, str]:
    """`maxmemory-policy` of each server (each primary of a cluster), from INFO memory,
    which managed services serve even where they rename CONFIG."""
    return {
        node: str(i.get("maxmemory_policy", "unknown")) for node, i in memory_info(client).items()
    }


def memory_full(client: RedisClient) -> bool:
    """Whether a server is at its maxmemory (with noeviction, it refuses writes)."""
    return any(
        int(i.get("maxmemory", 0)) > 0 and int(i["used_memory"]) >= int(i["maxmemory"])
        for i in memory_info(client).values()
    )


def check_eviction_policy(client: RedisClient, allow: bool = False) -> None:
    """Refuse a Redis that evicts keys: an evicted window or pending label is an event
    lost without a trace, while `noeviction` turns a full Redis into a loud, recoverable
    pause. `allow` is the override for those who accept the loss."""
    try:
        policies = eviction_policies(client)
    except REDIS_ERRORS as e:
        raise ConnectionProblem(
            f"cannot read Redis's maxmemory-policy: {e}", "start Redis or fix STREAMDRIFT_REDIS_URL"
        ) from None
    evicting = {n: p for n, p in policies.items() if p != SAFE_POLICY}
    if evicting and not allow:
        which = ", ".join(sorted(set(evicting.values())))
        raise ConfigError(
            f"Redis evicts keys (maxmemory-policy {which}): counted windows and pending labels "
            "would vanish without a trace",
            f"set maxmemory-policy {SAFE_POLICY} (CONFIG SET maxmemory-policy {SAFE_POLICY}), "
            "or STREAMDRIFT_ALLOW_EVICTION=true to accept losing state",
        )
