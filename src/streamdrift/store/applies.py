"""The atomic apply: one model's share of a batch (window deltas, the label join, dead-
letter counts) and its offset fences, written by one Lua script (`lua/apply.lua`), all
or nothing.

The call is split in two so the worker can pipeline: `send` writes the script call on a
connection of its own and returns at once; `read` waits for the answer. Whatever the
answer, the script either ran entirely or wrote nothing, so any failure in between is
repaired by running it again (a fence that moved makes the second run a no-op).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from redis.cluster import RedisCluster

from streamdrift.champion import JOINT_BINS
from streamdrift.performance import CALIBRATION_BINS, SCORE_BINS
from streamdrift.profile import LABEL, ReferenceProfile
from streamdrift.sketch import WindowSketch
from streamdrift.store.client import RedisClient, fault_of, lua
from streamdrift.store.depth_fields import depth_ops
from streamdrift.store.fences import Fence
from streamdrift.store.keys import ModelKeys
from streamdrift.store.records import ID_BUCKETS, MAX_PERFORMANCE_FIELDS, JoinDelta, JoinStats
from streamdrift.store.window_fields import KeyList, slice_performance_ops, window_ops

#: windows a model's labels recently joined into, kept per model so that the next call
#: declares their keys up front instead of learning them from a refused call
LABEL_WINDOWS_REMEMBERED = 64
#: a call refused for windows it lacked is sent again with them at most this often
MAX_WINDOW_ROUNDS = 4
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
class PendingApply:
    """An apply sent to Redis, its answer not read yet."""

    request: ApplyRequest
    keys: list[str]
    payload: bytes
    conn: Any
    pool: Any


class Applies:
    def __init__(self, client: RedisClient) -> None:
        self.redis = client
        self._script = client.register_script(lua("apply"))
        self._label_windows: dict[str, OrderedDict[int, None]] = {}
        self._bucket_keys: dict[str, list[str]] = {}
        #: times a call waited for a moving cluster slot (then ran)
        self.slot_waits = 0

    # ---- calls --------------------------------------------------------------------------
    def apply(self, request: ApplyRequest) -> ApplyResult:
        return self.read(self.send(request))

    def send(self, request: ApplyRequest) -> PendingApply:
        keys, payload = self.request(request)
        pool = self._pool(keys[0])
        conn = pool.get_connection()
        try:
            conn.send_command("EVALSHA", self._script.sha, len(keys), *keys, payload)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return PendingApply(request, keys, payload, conn, pool)

    def read(self, pending: PendingApply) -> ApplyResult:
        conn, pool = pending.conn, pending.pool
        try:
            res = conn.read_response()
        except redis.ResponseError as e:
            pool.release(conn)
            if not _rerun(e):
                raise
            # nothing ran: the script cache was empty (a restarted Redis), or a cluster
            # slot moved; the full client loads the script and follows redirects
            res = self._run(pending.keys, pending.payload)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        else:
            pool.release(conn)
        return self._result(pending.request, res)

    def _run(self, keys: list[str], payload: bytes) -> Any:
        """Run the script through the full client, waiting a little while a cluster slot
        of the model moves: the script refuses to run until all its keys are on one node
        (TRYAGAIN), which a resharding of one slot makes true within a second or two.
        Longer, and the worker's fault handling waits it out."""
        for attempt in range(SLOT_MOVE_RETRIES + 1):
            try:
                return self._script(keys=keys, args=[payload])
            except Exception as e:
                fault = fault_of(e)
                if fault is None or fault.code != "redis_cluster_moving":
                    raise
                if attempt == SLOT_MOVE_RETRIES:
                    raise
                self.slot_waits += 1
                time.sleep(min(0.05 * 2**attempt, 0.5))
        raise AssertionError("unreachable")

    def _pool(self, key: str) -> Any:
        if isinstance(self.redis, RedisCluster):
            node = self.redis.get_node_from_key(key)  # type: ignore[no-untyped-call]
            return self.redis.get_redis_connection(node).connection_pool
        return self.redis.connection_pool

    def _result(self, request: ApplyRequest, res: Any, rounds: int = 0) -> ApplyResult:
        code = int(res[0])
        if code == 1:
            return Applied(JoinStats(*(int(x) for x in res[1:5])), int(res[5]))
        if code == 0:
            return FenceMoved(res[1].decode(), int(res[2]))
        if code == 4:
            current = res[1].decode()
            return ModelChanged(int(current) if current else None)
        if code == 2 and rounds < MAX_WINDOW_ROUNDS:
            needed = [int(x) for x in res[1:]]
            self._remember(request.profile.model_id, needed)
            keys, payload = self.request(request, needed)
            return self._result(request, self._run(keys, payload), rounds + 1)
        reason = res[1].decode() if code == 3 else f"windows still missing: {res[1:]}"
        raise ApplyRejected(f"model {request.profile.model_id}: apply refused: {reason}")

    def _remember(self, model: str, windows: list[int]) -> None:
        seen = self._label_windows.setdefault(model, OrderedDict())
        for w in windows:
            seen[w] = None
            seen.move_to_end(w)
        while len(seen) > LABEL_WINDOWS_REMEMBERED:
            seen.popitem(last=False)

    # ---- the payload ----------------------------------------------------------------------
    def request(
        self, r: ApplyRequest, extra_windows: list[int] | None = None
    ) -> tuple[list[str], bytes]:
        """The script's KEYS and JSON payload."""
        profile, cfg, rev = r.profile, r.profile.config, r.profile.revision
        k = ModelKeys(profile.model_id)
        keys = KeyList([k.offsets, k.revision])
        ops: list[list[Any]] = []
        if r.invalid:
            counts = [x for reason, c in r.invalid.items() for x in (reason, c)]
            ops.append([keys.index(k.dlq), "incr", counts, 0])
        width, retention = cfg.window_seconds, cfg.retention_seconds
        for start, w in r.windows.items():
            expire_at = start + width + retention
            ops += window_ops(keys, k.window(rev, start), w, profile, expire_at)
            for name, sk in w.slices.items():
                wk = k.slice_window(rev, start, name)
                ops += window_ops(keys, wk, sk, profile, expire_at, packed=True)
            ops += slice_performance_ops(keys, k.window(rev, start), w, expire_at)
            ops += depth_ops(keys, k.window(rev, start), w, profile, expire_at)
            ops.append([keys.index(k.windows(rev)), "zadd", [start, start], 0])
            ops.append([keys.index(k.dirty), "zadd", [repr(r.now), f"{rev}:{start}"], 0])
        if r.windows:
            oldest = r.now - retention - width
            ops.append([keys.index(k.windows(rev)), "zprune", [repr(oldest)], 0])
        payload: dict[str, Any] = {
            "fence": [[f.field, f.expected, f.new] for f in r.fences],
            "ops": ops,
            "now": repr(r.now),
            "revision": str(rev),
        }
        if r.join:
            payload["join"] = self._join(keys, k, r, extra_windows or [])
        return keys.keys, orjson.dumps(payload)

    def _join(
        self, keys: KeyList, k: ModelKeys, r: ApplyRequest, extra_windows: list[int]
    ) -> dict[str, Any]:
        join = r.join
        assert join is not None
        profile, cfg, rev = r.profile, r.profile.config, r.profile.revision
        width = cfg.window_seconds
        label = profile.label
        windows: set[int] = set(r.windows) | set(join.ids_by_window) | set(extra_windows)
        if join.labels:
            windows.update(self._label_windows.get(profile.model_id, ()))
            windows.update(int(e[2]) // width * width for e in join.labels)
        wkeys = []
        for ws in sorted(windows):
            wk = k.window(rev, ws)
            label_key = wk.column(LABEL, label.kind) if label is not None else wk.perf
            wkeys.append(
                [
                    ws,
                    keys.index(wk.meta),
                    keys.index(wk.perf),
                    keys.index(label_key),
                    ws + width + cfg.retention_seconds,
                ]
            )
        buckets = self._bucket_keys.get(profile.model_id)
        if buckets is None:
            buckets = self._bucket_keys[profile.model_id] = [
                k.id_bucket(b) for b in range(ID_BUCKETS)
            ]
        index = keys.index
        out: dict[str, Any] = {
            "join": join.joins,
            "width": width,
            "rev": str(rev),
            "task": profile.task,
            "positive": profile.positive_class,
            "label_kind": label.kind if label is not None else None,
            "score_bins": SCORE_BINS,
            "max_fields": MAX_PERFORMANCE_FIELDS,
            "max_categories": cfg.max_categories,
            "shift": profile.label_shift(),
            "versions": cfg.slices.max_versions > 0,
            "champion": r.champion,
            "joint_bins": JOINT_BINS,
            "slice_keys": {key: True for key in profile.segments},
            "keep": cfg.dedupe_horizon_seconds,
            "dirty": index(k.dirty),
            "windows": index(k.windows(rev)),
            "stats": index(k.join),
            "wkeys": wkeys,
            "dedupe": [
                [index(k.window(rev, ws).ids), ws, ids] for ws, ids in join.ids_by_window.items()
            ],
            "preds": [
                [pid, rec, at[b]]
                for at in [_bucket_positions((p[2] for p in join.predictions), buckets, index)]
                for pid, rec, b in join.predictions
            ],
            "labels": [
                [e[0], e[1], e[2], e[3], at[e[4]]]
                for at in [_bucket_positions((e[4] for e in join.labels), buckets, index)]
                for e in join.labels
            ],
        }
        if cfg.performance.sequential.enabled:
            out["parts"] = cfg.performance.sequential.sub_windows
        if profile.score_edges is not None:
            # the profile's score layout: the script bins a score by these edges (the
            # rule of performance.score_bin) and sums scores per calibration bin
            out["score_edges"] = profile.score_edges
            out["calibration_bins"] = CALIBRATION_BINS
        return out


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


def _bucket_positions(
    buckets: Iterable[int], keys: list[str], index: Callable[[str], int]
) -> dict[int, int]:
    """Each bucket's key position in KEYS, looked up once per distinct bucket (a batch has
    thousands of records, 256 buckets at most), in the order the records name them."""
    return {b: index(keys[b]) for b in dict.fromkeys(buckets)}
