"""The atomic apply: one model's share of a batch (window deltas, the label join, dead-
letter counts) and its offset fences, written by one Lua script (`lua/apply.lua`), all
or nothing.

The join is worked out here, not in the script: the worker holds the records of the ids
it meets, replayed from their journals (`store.records`), `streamdrift.pairing` works out
what they become and what the pairs that meet add to their windows, and the script
appends that only if each shard's journal is still at the head the worker replayed to
(else the worker reads what it lacks and works the share out again). Redis spends a
compare per shard and a list push per shard written, not a read, a compare and a write
per id.

The call is split in two so the worker can pipeline: `send` writes the script call on a
connection of its own and returns at once; `read` waits for the answer. Whatever the
answer, the script either ran entirely or wrote nothing, so any failure in between is
repaired by running it again (a fence that moved makes the second run a no-op).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

from streamdrift.pairing import (
    PairRefused,
    PairRules,
    WindowSums,
    check_finite,
    comparison_sums,
    meet,
    window_sums,
)
from streamdrift.profile import LABEL, ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.store.client import RedisClient, fault_of, lua
from streamdrift.store.depth_fields import depth_ops
from streamdrift.store.fences import Fence
from streamdrift.store.keys import ModelKeys, WindowKeys
from streamdrift.store.records import (
    MAX_PERFORMANCE_FIELDS,
    JoinDelta,
    JoinStats,
    JournalWrite,
    Records,
)
from streamdrift.store.watermarks import watermark_ops
from streamdrift.store.window_deltas import FOLD_AT, Deltas, fields_push_op, push_op
from streamdrift.store.window_fields import (
    KeyList,
    Op,
    listed_meta_fields,
    slice_performance_ops,
    window_ops,
)

#: a call refused because another worker's batch appended to one of its shards meanwhile
#: is worked out again after a new read at most this often (each refusal means the other
#: worker's apply went through: the journals only move forward)
MAX_RECORD_ROUNDS = 50
#: a call refused while the model's cluster slot moves is tried again this often (~4 s)
SLOT_MOVE_RETRIES = 10


class ApplyRejected(Exception):
    """The apply script refused its input (nothing was written): a value the worker's
    checks should have stopped. The batch must not be committed."""


@dataclass(slots=True)
class ApplyRequest:
    """Everything one model's apply carries."""

    profile: ReferenceProfile
    fences: list[Fence]
    windows: dict[int, WindowSketch]
    invalid: Counter[str] = field(default_factory=Counter)
    join: JoinDelta | None = None
    now: float = 0.0
    #: the champion version: the join compares every other version's predictions of a
    #: labelled id with its
    champion: str | None = None
    #: the event-time watermarks the share's events carry each partition to (fence field
    #: -> event time), written with the counts (`store.watermarks`), and when (wall clock)
    marks: dict[str, float] = field(default_factory=dict)
    marks_at: float = 0.0


@dataclass(slots=True)
class Applied:
    stats: JoinStats
    #: how long the script ran, by Redis's clock (µs): the time Redis served no one else
    script_us: int = 0


@dataclass(slots=True)
class FenceMoved:
    """Another worker applied this model's events first: recompute against new fences."""

    field: str
    current: int


@dataclass(slots=True)
class ModelChanged:
    """The model is not at the revision the deltas were computed with: registered again
    (recompute with the new profile), or its keys are gone (`revision` None: lost state)."""

    revision: int | None


ApplyResult = Applied | FenceMoved | ModelChanged


@dataclass(slots=True)
class Prepared:
    """An apply ready to send: its KEYS and arguments, and what its join's meeting did."""

    request: ApplyRequest
    keys: list[str]
    args: list[Any]
    stats: JoinStats
    #: the join's appends, replayed into the worker's records once applied
    journal: JournalWrite | None = None
    #: why the request could not be built (the apply is refused; nothing is sent)
    refused: str | None = None


@dataclass(slots=True)
class PendingApply:
    """An apply sent to Redis, its answer not read yet."""

    request: ApplyRequest
    keys: list[str]
    #: the JSON payload
    args: list[Any]
    conn: Any
    pool: Any
    #: what the join's meeting did, worked out before the call
    stats: JoinStats = field(default_factory=JoinStats)
    journal: JournalWrite | None = None
    #: why the request could not be built (the apply is refused; nothing was sent)
    refused: str | None = None


class Applies:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._script = client.register_script(lua("apply"))
        self.records = Records(client)
        self.deltas = Deltas(client)
        #: times a call waited for a moving cluster slot (then ran)
        self.slot_waits = 0
        #: times a share was worked out again because a shard's journal it replayed had
        #: grown or been rewritten
        self.record_rounds = 0

    # ---- calls --------------------------------------------------------------------------
    def apply(self, request: ApplyRequest) -> ApplyResult:
        return self.read(self.send(request))

    def prepare(self, request: ApplyRequest) -> Prepared:
        """The call's KEYS and arguments, the join's records met: done for every model
        of a batch before the first `send`, so that no model's read of a journal waits
        behind another model's apply."""
        try:
            return Prepared(request, *self._request(request))
        except PairRefused as e:
            return Prepared(request, [], [], JoinStats(), refused=str(e))

    def send(self, request: ApplyRequest | Prepared) -> PendingApply:
        p = request if isinstance(request, Prepared) else self.prepare(request)
        request, keys, args, stats = p.request, p.keys, p.args, p.stats
        if p.refused is not None:
            return PendingApply(request, [], [], None, None, refused=p.refused)
        pool = self._pool(keys[0])
        conn = pool.get_connection()
        try:
            conn.send_command("EVALSHA", self._script.sha, len(keys), *keys, *args)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return PendingApply(request, keys, args, conn, pool, stats, p.journal)

    def read(self, pending: PendingApply) -> ApplyResult:
        if pending.refused is not None:
            model = pending.request.profile.model_id
            raise ApplyRejected(f"model {model}: apply refused: {pending.refused}")
        conn, pool = pending.conn, pending.pool
        try:
            res = conn.read_response()
        except redis.ResponseError as e:
            pool.release(conn)
            if not _rerun(e):
                raise
            # nothing ran: the script cache was empty (a restarted Redis), or a cluster
            # slot moved; the full client loads the script and follows redirects
            res = self._run(pending.keys, pending.args)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        else:
            pool.release(conn)
        return self._result(pending.request, res, pending.stats, pending.journal)

    def _run(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script through the full client (see `_through_slot_moves`)."""
        return self._through_slot_moves(lambda: self._script(keys=keys, args=args))

    def _through_slot_moves(self, call: Callable[[], Any]) -> Any:
        """A script call, waiting a little while a cluster slot of the model moves: a
        script refuses to run until all its keys are on one node (TRYAGAIN), which a
        resharding of one slot makes true within a second or two. Longer, and the
        worker's fault handling waits it out."""
        for attempt in range(SLOT_MOVE_RETRIES + 1):
            try:
                return call()
            except Exception as e:
                fault = fault_of(e)
                if fault is None or fault.code != "redis_cluster_moving":
                    raise
                if attempt == SLOT_MOVE_RETRIES:
                    raise
                self.slot_waits += 1
                time.sleep(min(0.05 * 2**attempt, 0.5))
        raise AssertionError("unreachable")

    def _refresh(self, model: str, shards: list[int]) -> None:
        self._through_slot_moves(lambda: self.records.refresh(model, shards))

    def _pool(self, key: str) -> Any:
        if isinstance(self.redis, RedisCluster):
            node = self.redis.get_node_from_key(key)  # type: ignore[no-untyped-call]
            return self.redis.get_redis_connection(node).connection_pool
        return self.redis.connection_pool

    def _result(
        self,
        request: ApplyRequest,
        res: Any,
        stats: JoinStats,
        journal: JournalWrite | None = None,
    ) -> ApplyResult:
        for _ in range(MAX_RECORD_ROUNDS):
            code = int(res[0])
            if code == 1:
                stats.duplicate_predictions += int(res[1])
                if journal is not None:
                    self.records.applied(journal)
                if len(res) > 3 and res[3]:
                    self.deltas.fold_keys([key.decode() for key in res[3]])
                return Applied(stats, int(res[2]))
            if code == 0:
                return FenceMoved(res[1].decode(), int(res[2]))
            if code == 4:
                current = res[1].decode()
                return ModelChanged(int(current) if current else None)
            if code != 5:
                break
            # a shard's journal is not at the head replayed (another worker's batch
            # appended, it was compacted, or Redis lost writes): read what is missing,
            # and work the share out anew
            self.record_rounds += 1
            moved = [int(s) for s in res[1].decode().split(",")]
            self._refresh(request.profile.model_id, moved)
            try:
                keys, args, stats, journal = self._request(request)
            except PairRefused as e:
                raise ApplyRejected(
                    f"model {request.profile.model_id}: apply refused: {e}"
                ) from None
            res = self._run(keys, args)
        reason = res[1].decode() if int(res[0]) == 3 else f"records kept changing: {res[1:]}"
        raise ApplyRejected(f"model {request.profile.model_id}: apply refused: {reason}")

    # ---- the payload ----------------------------------------------------------------------
    def request(self, r: ApplyRequest) -> tuple[list[str], list[Any], JoinStats]:
        """The script's KEYS and arguments (the JSON payload, then the join's blobs),
        and what the join's meeting did. Reads the journals the join meets the first
        time (raises PairRefused for a record no pair may be counted from)."""
        keys, args, stats, _ = self._request(r)
        return keys, args, stats

    def _request(
        self, r: ApplyRequest
    ) -> tuple[list[str], list[Any], JoinStats, JournalWrite | None]:
        profile, cfg, rev = r.profile, r.profile.config, r.profile.revision
        k = ModelKeys(profile.model_id)
        keys = KeyList([k.offsets, k.revision])
        ops: list[Op] = []
        if r.invalid:
            counts = [x for reason, c in r.invalid.items() for x in (reason, c)]
            ops.append([keys.index(k.dlq), "incr", counts, 0])
        if r.marks:
            ops += watermark_ops(keys, k, r.marks, r.marks_at)
        width, retention = cfg.window_seconds, cfg.retention_seconds
        blobs: list[bytes] = []  # ARGV[2..]: the windows' deltas, then the journals'
        for start, w in r.windows.items():
            expire_at = start + width + retention
            wk = k.window(rev, start)
            ops += _sketch_ops(keys, wk, w, profile, expire_at, blobs)
            for name, sk in w.slices.items():
                sw = k.slice_window(rev, start, name)
                ops += _sketch_ops(keys, sw, sk, profile, expire_at, blobs)
            ops += slice_performance_ops(keys, wk, w, expire_at)
            ops += depth_ops(keys, wk, w, profile, expire_at, blobs)
            ops += _touched(keys, k, rev, start, r.now)
        if r.windows:
            oldest = r.now - retention - width
            ops.append([keys.index(k.windows(rev)), "zprune", [repr(oldest)], 0])
        stats = JoinStats()
        journal: JournalWrite | None = None
        join = r.join
        if join and (join.predictions or join.labels):
            stats, journal = self._meet(keys, k, r, ops, blobs)
        payload: dict[str, Any] = {
            "fence": [[f.field, f.expected, f.new] for f in r.fences],
            "ops": ops,
            "now": repr(r.now),
            "revision": str(rev),
            "fold_at": FOLD_AT,
        }
        if journal is not None:
            heads: list[Any] = []
            for s, expected in journal.expected.items():
                blob = journal.blobs.get(s)
                at, token = (0, "") if blob is None else (len(blobs) + 2, blob[1])
                if blob is not None:
                    blobs.append(blob[0])
                heads.append([str(s), expected, keys.index(k.journal(s)), at, token])
            payload["journal"] = {"heads": keys.index(k.journal_heads), "shards": heads}
        if join and join.ids_by_window:
            payload["join"] = {
                "width": width,
                "keep": cfg.dedupe_horizon_seconds,
                "rev": str(rev),
                "dirty": keys.index(k.dirty),
                "windows": keys.index(k.windows(rev)),
                "stats": keys.index(k.join),
                "wkeys": [
                    [ws, keys.index(k.window(rev, ws).meta), ws + width + retention]
                    for ws in join.ids_by_window
                ],
                "dedupe": [
                    [keys.index(k.window(rev, ws).ids), ws, ids]
                    for ws, ids in join.ids_by_window.items()
                ],
            }
        return keys.keys, [orjson.dumps(payload), *blobs], stats, journal

    def _meet(
        self, keys: KeyList, k: ModelKeys, r: ApplyRequest, ops: list[Op], blobs: list[bytes]
    ) -> tuple[JoinStats, JournalWrite]:
        """The join's side of the call: the records the batch's ids have now, what the
        batch makes of them (`streamdrift.pairing`), the sums of the pairs that met as
        ops, and the journals' appends (each shard's head as replayed, for the script to
        check)."""
        join = r.join
        assert join is not None
        profile, cfg, rev = r.profile, r.profile.config, r.profile.revision
        rules = PairRules.of(profile, r.champion)
        model = profile.model_id
        wanted = {e[2] for e in join.predictions} | {e[4] for e in join.labels}
        current = self._through_slot_moves(lambda: self.records.view(model, wanted))
        meeting = meet(join.predictions, join.labels, current, rules)
        sums = window_sums(meeting.pairs, rules)
        comparison_sums(meeting.comparisons, rules, sums)
        check_finite(sums)
        width, retention = cfg.window_seconds, cfg.retention_seconds
        label = profile.label
        for ws, w in sums.items():
            ops += _sum_ops(keys, k, r, ws, w, ws + width + retention, label, blobs)
        for ws, (n, example) in meeting.repeats.items():
            meta = keys.index(k.window(rev, ws).meta)
            expire_at = ws + width + retention
            ops.append([meta, "incr", ["duplicates", n], expire_at])
            ops.append([meta, "first", ["duplicate_example", example], expire_at])
        for ws in sums.keys() | meeting.repeats.keys():
            ops += _touched(keys, k, rev, ws, r.now)
        stats = JoinStats(
            joined=len(meeting.pairs),
            duplicate_predictions=sum(n for n, _ in meeting.repeats.values()),
            duplicate_labels=meeting.duplicate_labels,
            labels_before_prediction=meeting.labels_waiting,
        )
        counts = {
            "joined": stats.joined,
            "duplicate_predictions": stats.duplicate_predictions,
            "duplicate_labels": stats.duplicate_labels,
            "labels_before_prediction": stats.labels_before_prediction,
            "labels_without_record": meeting.labels_without_record,
        }
        flat = [x for name, n in counts.items() if n for x in (name, n)]
        if flat:
            ops.append([keys.index(k.join), "incr", flat, 0])
        return stats, self.records.write(model, meeting.read, meeting.writes)


def _sketch_ops(
    keys: KeyList,
    wk: WindowKeys,
    sketch: WindowSketch,
    profile: ReferenceProfile,
    expire_at: int,
    blobs: list[bytes],
) -> list[Op]:
    """A window's (or a slice's) own sketch as ops: its hashes, and its numeric columns
    and score bins pushed as deltas."""
    return [
        *window_ops(keys, wk, sketch, profile, expire_at),
        *push_op(keys, wk, sketch.numeric, expire_at, blobs),
        *fields_push_op(keys, wk.meta_deltas, listed_meta_fields(sketch), {}, expire_at, blobs),
    ]


def _touched(keys: KeyList, k: ModelKeys, rev: int, start: int, now: float) -> list[Op]:
    """A window written to: listed among the revision's windows, and due an evaluation."""
    return [
        [keys.index(k.windows(rev)), "zadd", [start, start], 0],
        [keys.index(k.dirty), "zadd", [repr(now), f"{rev}:{start}"], 0],
    ]


def _capped(field: str) -> bool:
    """Fields labels and segments name (capped per perf hash by the script)."""
    inner = field[field.index("]") + 1 :] if field.startswith("[") else field
    return inner.startswith(("cm:", "s:"))


def _sum_ops(
    keys: KeyList,
    k: ModelKeys,
    r: ApplyRequest,
    ws: int,
    w: WindowSums,
    expire_at: int,
    label: Any,
    blobs: list[bytes],
) -> list[Op]:
    """One window's pair sums as ops: the fields named by classes and segments in the
    perf hash (capped there), the others pushed as one blob onto the window's perf
    deltas (store.window_deltas), and the joined labels' column (categories capped)."""
    rev = r.profile.revision
    wk = k.window(rev, ws)
    ops: list[Op] = []
    perf = keys.index(wk.perf)
    plain: dict[str, dict[str, Any]] = {"incr": {}, "incrf": {}}
    for kind, values in (("incr", w.ints), ("incrf", w.floats)):
        capped: list[Any] = [MAX_PERFORMANCE_FIELDS]
        for f, v in values.items():
            if _capped(f):
                capped.extend((f, v))
            else:
                plain[kind][f] = v
        if len(capped) > 1:
            ops.append([perf, "cap" + kind, capped, expire_at])
    ops += fields_push_op(keys, wk.perf_deltas, plain["incr"], plain["incrf"], expire_at, blobs)
    if label is None:
        return ops
    column = keys.index(wk.column(LABEL, label.kind))
    if w.label_counts:
        data: list[Any] = [r.profile.config.max_categories, keys.index(wk.meta)]
        data.append("cat_other:__label__")
        data += [x for f, v in w.label_counts.items() for x in (f, v)]
        ops.append([column, "cap", data, expire_at])
    if w.label_ints:
        ops.append(
            [column, "incr", [x for f, v in w.label_ints.items() for x in (f, v)], expire_at]
        )
    if w.label_floats:
        flat = [x for f, v in w.label_floats.items() for x in (f, v)]
        ops.append([column, "incrf", flat, expire_at])
    return ops


def _rerun(error: redis.ResponseError) -> bool:
    """Errors after which the script did not run and runs fine through the full client."""
    if isinstance(error, redis.exceptions.NoScriptError):
        return True
    first = str(error).split(" ", 1)[0].upper()
    return first in ("MOVED", "ASK", "TRYAGAIN") or type(error).__name__ in (
        "MovedError",
        "AskError",
        "TryAgainError",
    )
