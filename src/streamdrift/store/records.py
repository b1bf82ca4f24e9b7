"""The delayed-label join's records: one small record per prediction id, kept in Redis as
an append-only journal per shard of ids, and in the worker's memory as the journal's
replay.

A record's value says what the id is (the worker works out what a batch makes of the
records, `streamdrift.pairing`, and the apply script appends what changed):

    <time>|<version>|<class>|<score>[|<segment>=<value>,...]   a prediction awaiting its label
    <time>                                     a prediction of a model that joins no labels
    J<time>                                    joined (a repeat of either side counts once)
    L<time>|<label bin>|<label>                a label waiting for its prediction

Why a journal: with one Redis hash field per id, every labelled event cost Redis a read,
a compare and a write of its own (three `redis.call`s from Lua, ~10 µs), the largest
part of Redis's time per labelled event, and the worker a round trip to read them. Now
the ids fall into `JOURNAL_SHARDS` shards (crc32 of the id); a shard is a Redis list of
blobs, each blob the records one apply changed, and the shard's head (the last blob's
token) sits in one hash per model. The worker replays the journals it meets into memory
once and then only appends: the apply script checks one head per shard touched and
pushes one blob per shard written, so Redis's time per labelled event is a share of a
list push, not three hash calls.

The heads are what keep the memory honest: an apply whose shard heads are not the ones
the worker replayed to (another worker's batch met an id of the shard, the journal was
compacted, or Redis lost writes) writes nothing and is answered with the shards; the
worker reads what it lacks (`refresh`: the blobs after the ones it has, if they chain on
from its head, else the whole shard) and works the share out again. Each blob names the
token of the blob before it, so a journal that was replaced (compacted, or rolled back
and written again) never passes for one that grew.

Compaction rewrites a shard as one snapshot blob of its live records when the journal
has grown to twice the last snapshot (the worker that appends does it, from its replay),
and the janitor (`sweep`, under the evaluation lease) rewrites a few shards per run
without the ids older than the join horizon. Both go through a compare-and-set on the
head, so neither can overwrite an append it has not seen.
"""

from __future__ import annotations

import os
import random
import re
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import orjson

from streamdrift.pairing import ShardedRecords
from streamdrift.store.client import REDIS_ERRORS, RedisClient, lua
from streamdrift.store.keys import ModelKeys

try:  # the compiled scanner's module: optional, as for the columnar decode
    from streamdrift._scan import shards as _shards
except ImportError:  # pragma: no cover - the tests run where it is built
    _shards = None  # type: ignore[assignment]

#: shards of a model's ids: a batch's ids spread over all of them, so a few dozen heads
#: are checked per apply; a shard's snapshot of 500,000 pending ids is ~400 KB
JOURNAL_SHARDS = 64

#: a shard is compacted when its journal is this much larger than its last snapshot (a
#: factor drawn per shard, so that shards growing alike do not all come due in one
#: batch)...
COMPACT_GROWTH = (1.5, 2.5)
#: ... and at least this large (bytes), so that small shards are not rewritten often
COMPACT_MIN_BYTES = 32_768
#: shards compacted after one apply at most (the rest stay due for the next ones): the
#: apply's answer is not held up by many rewrites at once
MAX_COMPACTIONS_PER_APPLY = 4

#: the janitor rewrites at most this many shards per run, so it never blocks Redis long
MAX_SWEEP_SHARDS = 4

#: shards read per call (a full read of a large shard is a few hundred KB)
READ_SHARDS_PER_CALL = 8

#: hashes of one field per id that an earlier layout kept the records in (moved into the
#: journals when a model is first met, `Records.migrate`)
LEGACY_BUCKETS = 4096

#: a window's perf hash holds at most about this many fields (segments beyond go to
#: s:__other__, confusion-matrix cells to cm_other)
MAX_PERFORMANCE_FIELDS = 2000

_TIME = re.compile(r"[JL]?(\d+)")


def shards(prediction_ids: list[str]) -> list[int]:
    """Each id's shard: crc32 is stable across processes (unlike `hash`) and cheap. The
    compiled scanner's module computes the same (zlib's CRC-32 of the UTF-8 bytes) a
    list at a time, where a call per id cost ~0.3 µs; without it, zlib per id."""
    if _shards is not None:
        return _shards(prediction_ids, JOURNAL_SHARDS)
    crc = zlib.crc32
    return [crc(pid.encode()) % JOURNAL_SHARDS for pid in prediction_ids]


def shared(record: str) -> str:
    """A joined mark without versions ("J<time>") as one string per time, shared by
    every id joined with a prediction of that second: most records a worker holds are
    joined marks kept for the horizon (to spot repeats), and their text is the same for
    all ids of a second. Interned strings are freed with their last id."""
    if record[:1] == "J" and "\t" not in record:
        return sys.intern(record)
    return record


def blob(token: str, previous: str, records: Mapping[str, str]) -> bytes:
    """A journal blob: its token, the token of the blob before ("" for a shard's first,
    or a snapshot), then id, record, id, record, ..."""
    return orjson.dumps([token, previous, *chain.from_iterable(records.items())])


def new_token() -> str:
    """A blob's token: random, so that two writers (or a Redis that lost a write and was
    written again) never make the same head."""
    return os.urandom(8).hex()


def record_time(record: str) -> int | None:
    """The time a record is kept by (a prediction's, or a waiting label's)."""
    m = _TIME.match(record)
    return int(m.group(1)) if m else None


@dataclass(slots=True)
class JoinDelta:
    """A batch's prediction ids for one model, and its side of the delayed-label join:
    prediction records `[prediction_id, record, shard]` and labels `[prediction_id,
    label, label time, label bin or -1, shard]`; or, for a model that joins no labels,
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


@dataclass(slots=True)
class Shard:
    """One shard's journal as replayed: its records, the head it was replayed to, and
    the journal's size (for compaction)."""

    records: dict[str, str] = field(default_factory=dict)
    #: the token of the last blob replayed ("" for an empty journal)
    token: str = ""
    #: blobs in the journal list
    blobs: int = 0
    #: bytes of the journal
    size: int = 0
    #: compact once the journal is larger than this
    compact_at: int = COMPACT_MIN_BYTES

    def snapshot_taken(self, size: int) -> None:
        """The journal is one snapshot of `size` bytes (or was read whole at that size):
        the next compaction is due once it has grown by a factor of COMPACT_GROWTH."""
        low, high = COMPACT_GROWTH
        self.compact_at = max(COMPACT_MIN_BYTES, int(size * random.uniform(low, high)))

    def replay(self, blobs: Iterable[bytes]) -> bool:
        """Append the blobs that follow the ones replayed; False if one does not chain on
        (the journal was rewritten: read it whole)."""
        records = self.records
        for raw in blobs:
            blob = orjson.loads(raw)
            if blob[1] != self.token:
                return False
            it = iter(blob[2:])
            for pid, rec in zip(it, it, strict=True):
                records[pid] = shared(rec)
            self.token = blob[0]
            self.blobs += 1
            self.size += len(raw)
        return True


@dataclass(slots=True)
class JournalWrite:
    """One apply's appends: per shard, the head expected, the blob and its new head."""

    model: str
    #: shard -> the head the worker replayed to (checked by the script)
    expected: dict[int, str]
    #: shard -> (the blob, its token): shards the apply writes
    blobs: dict[int, tuple[bytes, str]]
    #: shard -> {id: record}: what the blobs hold, for the replay once applied
    changes: dict[int, dict[str, str]]


class RecordView(ShardedRecords):
    """The records of one model's replayed shards, by (shard, id), as pairing reads them."""

    def __init__(self, shards: Mapping[int, Shard]) -> None:
        self._shards = shards

    def by_shard(self) -> dict[int, dict[str, str]]:
        return {s: shard.records for s, shard in self._shards.items()}

    def __getitem__(self, place: tuple[int, str]) -> str | None:
        return self._shards[place[0]].records.get(place[1])

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for s, shard in self._shards.items():
            for pid in shard.records:
                yield (s, pid)

    def __len__(self) -> int:
        return sum(len(shard.records) for shard in self._shards.values())


class Records:
    """The join's journals: what this process has replayed of them, appends, compaction
    and the janitor."""

    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._read = client.register_script(lua("read_journal"))
        self._compact = client.register_script(lua("compact_journal"))
        self._migrate = client.register_script(lua("migrate_buckets"))
        #: model -> shard -> its replay
        self._memory: dict[str, dict[int, Shard]] = {}
        #: shards read whole (first use, or a journal rewritten since)
        self.full_reads = 0
        #: shards compacted by this process after its appends
        self.compactions = 0
        self._changed = False

    # ---- what the worker holds --------------------------------------------------------
    def view(self, model: str, wanted: Iterable[int]) -> RecordView:
        """The model's records in the shards `wanted`, each read from Redis the first time."""
        held = self._memory.get(model)
        if held is None:
            self.migrate(model)
            held = self._memory[model] = {}
        missing = [s for s in dict.fromkeys(wanted) if s not in held]
        if missing:
            self.refresh(model, missing)
        return RecordView(held)

    def refresh(self, model: str, wanted: Iterable[int]) -> None:
        """Bring the shards `wanted` up to Redis's heads: the blobs after the ones
        replayed, or (a journal rewritten, or never read) the whole shard."""
        held = self._memory.setdefault(model, {})
        self._changed = True
        k = ModelKeys(model)
        todo = list(dict.fromkeys(wanted))
        for c in range(0, len(todo), READ_SHARDS_PER_CALL):
            part = todo[c : c + READ_SHARDS_PER_CALL]
            got = self._fetch(k, [(s, held[s].blobs if s in held else 0) for s in part])
            again: list[int] = []
            for s, (head, blobs) in zip(part, got, strict=True):
                shard = held.get(s)
                if shard is None or not shard.replay(blobs) or shard.token != head:
                    again.append(s)
            for s in again:  # not held until read whole (also if that read fails)
                held.pop(s, None)
            for s, (head, blobs) in zip(
                again, self._fetch(k, [(s, 0) for s in again]), strict=True
            ):
                shard = Shard()
                if not shard.replay(blobs) or shard.token != head:
                    raise RuntimeError(
                        f"model {model}: the join journal of shard {s} does not chain "
                        f"from its first blob to its head {head!r}"
                    )
                shard.snapshot_taken(shard.size)
                held[s] = shard
                self.full_reads += 1

    def _fetch(self, k: ModelKeys, wanted: list[tuple[int, int]]) -> list[tuple[str, list[bytes]]]:
        if not wanted:
            return []
        keys = [k.journal_heads] + [k.journal(s) for s, _ in wanted]
        out = self._read(keys=keys, args=[orjson.dumps([[str(s), n] for s, n in wanted])])
        return [(out[i].decode(), out[i + 1]) for i in range(0, len(out), 2)]

    def migrate(self, model: str) -> int:
        """Move the records an earlier layout left (one hash field per id in
        `LEGACY_BUCKETS` hashes) into the journals, once: only while the model has no
        journal yet, and only if the buckets still hold what was read (else it is tried
        again). Workers of the earlier layout must be stopped first: they would go on
        writing to the buckets. Returns the records moved."""
        k = ModelKeys(model)
        names = [k.legacy_bucket(b) for b in range(LEGACY_BUCKETS)]
        for _ in range(3):
            if self.redis.hlen(k.journal_heads) or not self.redis.exists(*names):
                return 0
            pipe = self.redis.pipeline(transaction=False)
            for name in names:
                pipe.hgetall(name)
            found = [(n, h) for n, h in zip(names, pipe.execute(), strict=True) if h]
            by_shard: dict[int, dict[str, str]] = {}
            moved = 0
            for _, h in found:
                for pid, rec in h.items():
                    p = pid.decode()
                    by_shard.setdefault(shards([p])[0], {})[p] = rec.decode()
                    moved += 1
            heads: list[str] = []
            blobs: list[bytes] = []
            for s, recs in sorted(by_shard.items()):
                token = new_token()
                heads += (str(s), token)
                blobs.append(blob(token, "", recs))
            keys = [k.journal_heads, *(k.journal(s) for s in sorted(by_shard))]
            keys += [n for n, _ in found]
            args: list[Any] = [len(by_shard), moved, *heads, *blobs]
            if int(self._migrate(keys=keys, args=args)):
                return moved
        raise RuntimeError(
            f"model {model}: the join's records of the earlier layout kept changing while "
            "they were moved; stop the workers of the earlier version and start again"
        )

    @property
    def changed(self) -> bool:
        """Whether records were replayed or appended since `held_ids` was last asked."""
        return self._changed

    def held_ids(self) -> int:
        """Records held in memory, every model."""
        self._changed = False
        return sum(len(s.records) for m in self._memory.values() for s in m.values())

    # ---- appends ----------------------------------------------------------------------
    def write(
        self,
        model: str,
        read: Iterable[tuple[int, str]],
        writes: Mapping[tuple[int, str], str],
    ) -> JournalWrite:
        """What an apply checks and appends: the heads of every shard it read, a blob
        per shard it changes."""
        held = self._memory[model]
        touched = {s for s, _ in read}
        touched.update(s for s, _ in writes)
        expected = {s: held[s].token for s in touched}
        changes: dict[int, dict[str, str]] = {}
        for (s, pid), rec in writes.items():
            got = changes.get(s)
            if got is None:
                got = changes[s] = {}
            got[pid] = rec
        blobs: dict[int, tuple[bytes, str]] = {}
        for s, recs in changes.items():
            token = new_token()
            blobs[s] = (blob(token, expected[s], recs), token)
        return JournalWrite(model, expected, blobs, changes)

    def applied(self, w: JournalWrite) -> None:
        """The apply went through: replay its blobs, and compact the shards that grew past
        their mark."""
        held = self._memory.get(w.model)
        if held is None:
            return
        self._changed = True
        due: list[tuple[int, int, Shard]] = []
        for s, (raw, token) in w.blobs.items():
            shard = held.get(s)
            if shard is None or shard.token != w.expected[s]:
                held.pop(s, None)  # replayed meanwhile: read again when next met
                continue
            records = shard.records
            for pid, rec in w.changes[s].items():
                records[pid] = shared(rec)
            shard.token = token
            shard.blobs += 1
            shard.size += len(raw)
            if shard.size > shard.compact_at:
                due.append((shard.compact_at - shard.size, s, shard))
        for _, s, shard in sorted(due, key=lambda d: d[0])[:MAX_COMPACTIONS_PER_APPLY]:
            try:
                self._rewrite(w.model, s, shard, None)
            except REDIS_ERRORS:
                # the apply went through; a rewrite can wait for the next one (a moving
                # cluster slot, a Redis going away: the next apply meets it)
                break

    def _rewrite(self, model: str, s: int, shard: Shard, cutoff: int | None) -> int:
        """Replace a shard's journal by one snapshot of its live records (without the ids
        older than `cutoff`, if given: the janitor's), if its head is still the
        replay's. Returns the ids dropped (-1: the head moved, nothing done)."""
        live = shard.records
        keep = live
        if cutoff is not None:
            keep = {p: r for p, r in live.items() if (record_time(r) or cutoff) >= cutoff}
        dropped = len(live) - len(keep)
        token = new_token()
        snapshot = blob(token, "", keep)
        if cutoff is not None and not dropped and len(snapshot) * COMPACT_GROWTH[0] >= shard.size:
            # the janitor's pass found nothing to drop and little to compact: a rewrite
            # would only make every worker holding the shard read it whole again
            return 0
        k = ModelKeys(model)
        done = self._compact(
            keys=[k.journal_heads, k.journal(s)], args=[str(s), shard.token, token, snapshot]
        )
        if not int(done):
            return -1
        shard.records = keep
        shard.token, shard.blobs, shard.size = token, 1, len(snapshot)
        shard.snapshot_taken(len(snapshot))
        self.compactions += 1
        return dropped

    # ---- outside the worker's path ----------------------------------------------------
    def lookup(self, model: str, prediction_id: str) -> str | None:
        """An id's record as Redis has it now (read whole: for inspection and tests)."""
        (s,) = shards([prediction_id])
        (_, blobs) = self._fetch(ModelKeys(model), [(s, 0)])[0]
        shard = Shard()
        shard.replay(blobs)
        return shard.records.get(prediction_id)

    def put(self, model: str, records: Mapping[str, str]) -> None:
        """Append records as another writer would (a compare-and-set on each head: tried
        again on a race). For tools and tests that set a record by hand."""
        by_shard: dict[int, dict[str, str]] = {}
        for pid, rec in records.items():
            by_shard.setdefault(shards([pid])[0], {})[pid] = rec
        k = ModelKeys(model)
        for s, recs in by_shard.items():
            while True:
                (head, _) = self._fetch(k, [(s, 1 << 30)])[0]  # the head only
                token = new_token()
                done = self._compact(
                    keys=[k.journal_heads, k.journal(s)],
                    args=[str(s), head, token, blob(token, head, recs), "append"],
                )
                if int(done):
                    break

    def sweep(self, model: str, horizon: int, now: float) -> int:
        """Drop ids older than `horizon` seconds, a few shards per call: every shard is
        rewritten once per tenth of the horizon (between a minute and an hour), so an id
        outlives its horizon by at most that. Call under the evaluation lease. Returns the
        ids removed."""
        k = ModelKeys(model)
        period = min(3600.0, max(60.0, horizon / 10))
        cursor, at = self.redis.hmget(k.sweep, ["cursor", "at"])
        if at is None:
            self.redis.hset(k.sweep, mapping={"cursor": 0, "at": repr(now)})
            return 0
        first, since = int(cursor or 0), max(float(at), now - period)
        due = min(int(JOURNAL_SHARDS * (now - since) / period), MAX_SWEEP_SHARDS)
        if due < 1:
            return 0
        removed = 0
        for i in range(due):
            s = (first + i) % JOURNAL_SHARDS
            (head, blobs) = self._fetch(k, [(s, 0)])[0]
            if not blobs:
                continue
            shard = Shard()
            if not shard.replay(blobs) or shard.token != head:
                continue  # not a chain (cannot happen in one read): leave it
            removed += max(0, self._rewrite(model, s, shard, int(now - horizon)))
        since += due * period / JOURNAL_SHARDS
        self.redis.hset(
            k.sweep, mapping={"cursor": (first + due) % JOURNAL_SHARDS, "at": repr(since)}
        )
        return removed
