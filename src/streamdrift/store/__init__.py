"""Redis: every key, script and read of streamdrift's state, one module per kind of state.

    keys            the key layout (the only place that spells a key)
    client          connecting (one server or a cluster), the Lua scripts, faults
    profiles        reference profiles, the model registry, the state marker
    window_fields   what a window is: its fields, merges, encoder and decoder
    applies         the atomic apply (window deltas + label join + fences), pipelined
    windows         reading windows back
    records         the label join's records: journals per shard of ids, their replay,
                    compaction and janitor
    fences          offset fences: where Redis says each partition was applied up to
    schedule        dirty marks and the evaluation lease
    alert_ledger    alerts claimed and published, each once
    counters        dead letters, join counters
    episodes        alert episodes: open, escalated, resolved, each once
    watermarks      how far in event time each partition was applied
    replays         the ledger of dead letters sent back to their topics

`Store` holds one of each over one client.
"""

from __future__ import annotations

from streamdrift.errors import ConnectionProblem
from streamdrift.store.alert_ledger import AlertLedger
from streamdrift.store.applies import (
    Applied,
    Applies,
    ApplyRejected,
    ApplyRequest,
    ApplyResult,
    FenceMoved,
    ModelChanged,
    PendingApply,
    Prepared,
)
from streamdrift.store.client import (
    REDIS_ERRORS,
    RedisClient,
    check_eviction_policy,
    connect,
    fault_of,
)
from streamdrift.store.counters import Counters
from streamdrift.store.episodes import Episodes, EpisodeState
from streamdrift.store.fences import Fence, Fences, ModelHead
from streamdrift.store.keys import fence_field
from streamdrift.store.profiles import Profiles
from streamdrift.store.records import JOURNAL_SHARDS, JoinDelta, JoinStats, Records, shards
from streamdrift.store.replays import ReplayLedger
from streamdrift.store.schedule import Schedule
from streamdrift.store.watermarks import Watermarks
from streamdrift.store.windows import Windows


class Store:
    """The kinds of state, over one Redis (or Redis Cluster) client."""

    def __init__(self, url: str, client: RedisClient | None = None) -> None:
        self.url = url
        self.redis: RedisClient = client if client is not None else connect(url)
        self.profiles = Profiles(self.redis)
        self.windows = Windows(self.redis)
        self.applies = Applies(self.redis)
        self.records = Records(self.redis)
        self.fences = Fences(self.redis)
        self.schedule = Schedule(self.redis)
        self.alerts = AlertLedger(self.redis)
        self.counters = Counters(self.redis)
        self.episodes = Episodes(self.redis)
        self.watermarks = Watermarks(self.redis)
        self.replays = ReplayLedger(self.redis)

    def ping(self) -> None:
        try:
            self.redis.ping()
        except REDIS_ERRORS as e:
            raise ConnectionProblem(
                f"cannot reach Redis at {self.url}: {e}",
                "start Redis or set STREAMDRIFT_REDIS_URL",
            ) from None

    def check_eviction_policy(self, allow: bool = False) -> None:
        check_eviction_policy(self.redis, allow)


__all__ = [
    "JOURNAL_SHARDS",
    "Applied",
    "ApplyRejected",
    "ApplyRequest",
    "ApplyResult",
    "EpisodeState",
    "Fence",
    "FenceMoved",
    "JoinDelta",
    "JoinStats",
    "ModelChanged",
    "ModelHead",
    "PendingApply",
    "Prepared",
    "Store",
    "fault_of",
    "fence_field",
    "shards",
]
