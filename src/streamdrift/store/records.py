"""The delayed-label join's records in Redis: one small record per prediction id, in
4,096 hash buckets per model, and the janitor that drops them past the join horizon.

A record's value says what the id is (the worker reads them, works out what a batch
makes of them, `streamdrift.pairing`, and the apply script writes them when they are
still as read):

    <time>|<version>|<class>|<score>[|<segment>=<value>,...]   a prediction awaiting its label
    <time>                                     a prediction of a model that joins no labels
    J<time>                                    joined (a repeat of either side counts once)
    L<time>|<label bin>|<label>                a label waiting for its prediction

Ids live in buckets (crc32 of the id, mod ID_BUCKETS) because per-key overhead is paid
once per bucket, and a bucket of up to 128 ids (Redis's default hash-max-listpack-entries)
stays a compact listpack: ~500k pending predictions per model at ~60 bytes each.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from streamdrift.store.client import RedisClient, lua
from streamdrift.store.keys import ModelKeys

ID_BUCKETS = 4096

#: the janitor clears at most this many buckets per run, so it never blocks Redis
MAX_SWEEP_BUCKETS = 64

#: a window's perf hash holds at most about this many fields (segments beyond go to
#: s:__other__, confusion-matrix cells to cm_other)
MAX_PERFORMANCE_FIELDS = 2000


def buckets(prediction_ids: list[str]) -> list[int]:
    """Each id's bucket: crc32 is stable across processes (unlike `hash`) and cheap."""
    crc = zlib.crc32
    return [crc(pid.encode()) % ID_BUCKETS for pid in prediction_ids]


@dataclass(slots=True)
class JoinDelta:
    """A batch's prediction ids for one model, and its side of the delayed-label join:
    prediction records `[prediction_id, record, bucket]` and labels `[prediction_id,
    label, label time, label bin or -1, bucket]`; or, for a model that joins no labels,
    just its ids by window (kept only to spot repeats)."""

    joins: bool = True
    predictions: list[list[Any]] = field(default_factory=list)
    labels: list[list[Any]] = field(default_factory=list)
    #: a model without labels: its prediction ids by window start, to count repeats
    ids_by_window: dict[int, list[str]] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.predictions or self.labels or self.ids_by_window)


@dataclass(slots=True)
class JoinStats:
    """What one apply's join did."""

    joined: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    labels_before_prediction: int = 0


class Records:
    """The janitor of the join's records."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._sweep = client.register_script(lua("sweep"))
        self._read = client.register_script(lua("read_records"))
        self._names: dict[str, list[str]] = {}

    def bucket_keys(self, model: str) -> list[str]:
        """The model's bucket keys by bucket, spelled once per model."""
        names = self._names.get(model)
        if names is None:
            k = ModelKeys(model)
            names = self._names[model] = [k.id_bucket(b) for b in range(ID_BUCKETS)]
        return names

    def read(
        self, model: str, places: Iterable[tuple[int, str]]
    ) -> dict[tuple[int, str], str | None]:
        """The records of (bucket, prediction id) places, in one read-only script call."""
        order = list(dict.fromkeys(places))
        if not order:
            return {}
        names = self.bucket_keys(model)
        keys: list[str] = []
        position: dict[int, int] = {}
        flat: list[Any] = []
        for bucket, pid in order:
            at = position.get(bucket)
            if at is None:
                keys.append(names[bucket])
                at = position[bucket] = len(keys)
            flat += (at, pid)
        values = self._read(keys=keys, args=[orjson.dumps(flat)])
        return {
            place: None if v is None else v.decode() for place, v in zip(order, values, strict=True)
        }

    def sweep(self, model: str, horizon: int, now: float) -> int:
        """Drop ids older than `horizon` seconds, a few buckets per call: the whole ring is
        swept once per tenth of the horizon (between a minute and an hour), so an id
        outlives its horizon by at most that. Call under the evaluation lease. Returns the
        ids removed."""
        k = ModelKeys(model)
        period = min(3600.0, max(60.0, horizon / 10))
        cursor, at = self.redis.hmget(k.sweep, ["cursor", "at"])
        if at is None:
            self.redis.hset(k.sweep, mapping={"cursor": 0, "at": repr(now)})
            return 0
        first, since = int(cursor or 0), max(float(at), now - period)
        due = min(int(ID_BUCKETS * (now - since) / period), MAX_SWEEP_BUCKETS)
        if due < 1:
            return 0
        keys = [k.id_bucket((first + i) % ID_BUCKETS) for i in range(due)]
        removed = int(self._sweep(keys=keys, args=[int(now - horizon)]))
        since += due * period / ID_BUCKETS
        self.redis.hset(k.sweep, mapping={"cursor": (first + due) % ID_BUCKETS, "at": repr(since)})
        return removed
