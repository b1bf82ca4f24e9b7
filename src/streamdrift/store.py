"""Redis: the key layout, the atomic batch apply, and every read of monitor state.

Nothing else in streamdrift builds a key string. Every key of one model carries the hash
tag `{model}`, so one model's apply touches a single Redis Cluster slot. Layout
(`<rev>` is the profile revision, so re-registering never mixes bins of two references):

    sd:models                          SET    registered model ids
    sd:dlq                             HASH   reason -> count, bad events with no known model
    sd:{m}:profile                     STRING reference profile, JSON
    sd:{m}:revision                    STRING profile revision
    sd:{m}:offsets                     HASH   "<topic>:<partition>" -> last applied offset
    sd:{m}:dlq                         HASH   reason -> count of this model's bad events
    sd:{m}:windows:<rev>               ZSET   window start (score and member)
    sd:{m}:dirty                       ZSET   "<rev>:<start>" -> time of last apply
    sd:{m}:w:<rev>:<start>:meta        HASH   count, outliers, version:<v>, invalid:<reason>,
                                              extra:<feature the reference lacks>,
                                              duplicates, duplicate_example
    sd:{m}:w:<rev>:<start>:num:<f>     HASH   bin:<i>, n, sum, sumsq, min, max, missing,
                                              oor (beyond the reference range + margin)
    sd:{m}:w:<rev>:<start>:cat:<f>     HASH   <category> -> count, __missing__, __other__
    sd:{m}:w:<rev>:<start>:ids         SET    a model without labels: the window's prediction
                                              ids, until dedupe_horizon_seconds after its end
    sd:{m}:w:<rev>:<start>:outliers    LIST   the window's first outliers (JSON: id, score,
                                              the features that make them extreme)
    sd:{m}:w:<rev>:<start>:perf        HASH   labelled pairs: n, cm:<actual>|<predicted>,
                                              pos:/neg:<score bin>, ll, brier, ae, se, ...
    sd:{m}:ids:<bucket>                HASH   prediction_id -> "<time>|<version>|<class>|
                                              <score>" awaiting its label, "J<time>"
                                              once joined, "L<time>|<bin>|<label>" for a
                                              label waiting for its prediction. bucket =
                                              crc32(id) mod ID_BUCKETS: small hashes stay
                                              listpack-encoded, ~60 bytes an id
    sd:{m}:sweep                       HASH   cursor, at: the janitor that drops ids older
                                              than the join horizon; alerts_pruned_at
    sd:{m}:join                        HASH   joined, duplicate_*, labels_before_prediction
    sd:{m}:quality                     HASH   "<kind>:<feature>" -> "<first>:<last>" window
                                              of the data-quality finding's last episode
    sd:{m}:alerts                      HASH   alert_id -> alert JSON
    sd:{m}:alert_state                 HASH   alert_id -> claimed:<time> | published:<time>
    sd:{m}:eval_lock                   STRING evaluator lease (SET NX PX)
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import orjson
import redis

from streamdrift.errors import ConnectionProblem
from streamdrift.performance import SCORE_BINS, PerformanceSketch
from streamdrift.profile import MISSING, OTHER, ReferenceProfile
from streamdrift.sketch import CategoricalSketch, NumericSketch, WindowSketch

# One apply = fence check + all deltas + fence advance, in one Lua call: Redis runs it
# atomically, so a worker killed at any instant leaves either all of a batch or none.
# A fence entry is (field, expected current offset, new offset). Any mismatch means
# another worker got there first (a rebalance zombie): nothing is written.
_APPLY_LUA = """
local p = cjson.decode(ARGV[1])
local offsets = KEYS[1]
for _, f in ipairs(p.fence) do
  local cur = redis.call('HGET', offsets, f[1])
  if cur then cur = tonumber(cur) else cur = -1 end
  if cur ~= f[2] then return {0, f[1], tostring(cur)} end
end
for _, op in ipairs(p.ops) do
  local key, kind, d = KEYS[op[1]], op[2], op[3]
  if kind == 'incr' then
    for j = 1, #d, 2 do redis.call('HINCRBY', key, d[j], d[j + 1]) end
  elseif kind == 'incrf' then
    for j = 1, #d, 2 do redis.call('HINCRBYFLOAT', key, d[j], d[j + 1]) end
  elseif kind == 'min' or kind == 'max' then
    for j = 1, #d, 2 do
      local c = redis.call('HGET', key, d[j])
      local v = tonumber(d[j + 1])
      if (not c) or (kind == 'min' and v < tonumber(c)) or (kind == 'max' and v > tonumber(c)) then
        redis.call('HSET', key, d[j], d[j + 1])
      end
    end
  elseif kind == 'cap' then
    local cap, other = d[1], d[2]
    for j = 3, #d, 2 do
      if redis.call('HEXISTS', key, d[j]) == 1 or redis.call('HLEN', key) < cap then
        redis.call('HINCRBY', key, d[j], d[j + 1])
      else
        redis.call('HINCRBY', key, other, d[j + 1])
      end
    end
  elseif kind == 'capped_list' then
    local cap, len = d[1], redis.call('LLEN', key)
    for j = 2, #d do
      if len < cap then redis.call('RPUSH', key, d[j]); len = len + 1 end
    end
  elseif kind == 'zadd' then
    redis.call('ZADD', key, d[1], d[2])
  elseif kind == 'zprune' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', d[1])
  end
  if op[4] then redis.call('EXPIREAT', key, op[4]) end
end
local joined, dup_pred, dup_label, waiting, unjoinable = 0, 0, 0, 0, 0
local J = p.ids
if J then
  -- Every prediction id is remembered in a hash bucket (`J.bkey .. bucket`), the value
  -- telling what it is: a prediction record awaiting its label ("<time>|..."), "J<time>"
  -- once joined, or "L<time>|<bin>|<label>" for a label still waiting for its
  -- prediction. One HSETNX stores a prediction and spots a repeat; the (prediction,
  -- label) pair meets here exactly once, whichever came first, and adds one labelled
  -- pair to the prediction's window.
  local ints, floats, expire, touched, label_keys = {}, {}, {}, {}, {}
  local function add(t, key, f, v)
    local h = t[key]
    if not h then h = {}; t[key] = h end
    h[f] = (h[f] or 0) + v
  end
  local function pair(rec, label, lts, lbin)
    local pts, cls, score, segs = string.match(rec, '^([^|]*)|[^|]*|([^|]*)|([^|]*)(.*)$')
    pts = tonumber(pts)
    local ws = math.floor(pts / J.width) * J.width
    local base = J.base .. string.format('%d', ws)
    local pk = base .. ':perf'
    expire[pk] = ws + J.width + J.retention
    touched[ws] = true
    add(ints, pk, 'n', 1)
    local delay = tonumber(lts) - pts
    if delay < 0 then delay = 0 end
    add(floats, pk, 'dsum', delay)
    local b = 0
    if delay >= 1 then b = 1 + math.floor(math.log(delay) / math.log(2) + 1e-9) end
    add(ints, pk, 'd:' .. b, 1)
    if J.task == 'regression' then
      local y, yhat = tonumber(label), tonumber(score)
      if y and yhat then
        local e = yhat - y
        add(floats, pk, 'ae', math.abs(e)); add(floats, pk, 'se', e * e)
        local c = y - J.shift  -- the label's reference mean: no cancellation in R²
        add(floats, pk, 'err', e); add(floats, pk, 'y', c); add(floats, pk, 'y2', c * c)
        if y ~= 0 then
          add(floats, pk, 'ape', math.abs(e) / math.abs(y)); add(ints, pk, 'nape', 1)
        end
      end
    else
      if cls ~= '' then add(ints, pk, 'cm:' .. label .. '|' .. cls, 1) end
      if score ~= '' and J.positive and J.positive ~= cjson.null then
        local sc = tonumber(score)
        local bin = math.floor(sc * J.score_bins)
        if bin < 0 then bin = 0 elseif bin >= J.score_bins then bin = J.score_bins - 1 end
        local pos = label == J.positive
        local pc = math.min(math.max(sc, 1e-15), 1 - 1e-15)
        if pos then
          add(ints, pk, 'pos:' .. bin, 1); add(floats, pk, 'll', -math.log(pc))
          add(floats, pk, 'brier', (sc - 1) * (sc - 1))
        else
          add(ints, pk, 'neg:' .. bin, 1); add(floats, pk, 'll', -math.log(1 - pc))
          add(floats, pk, 'brier', sc * sc)
        end
        add(ints, pk, 'ns', 1)
      end
    end
    -- per segment: labelled count and correct classes, or absolute and squared errors
    for sk, sv in string.gmatch(segs, '([^,|=]+)=([^,|]*)') do
      local sp = 's:' .. sk .. '=' .. sv .. ':'
      add(ints, pk, sp .. 'n', 1)
      if J.task == 'regression' then
        local y, yhat = tonumber(label), tonumber(score)
        if y and yhat then
          add(floats, pk, sp .. 'ae', math.abs(yhat - y))
          add(floats, pk, sp .. 'se', (yhat - y) ^ 2)
        end
      elseif cls ~= '' then
        add(ints, pk, sp .. 'ok', (label == cls) and 1 or 0)
      end
    end
    if J.label_kind == 'categorical' then
      local lk = base .. ':cat:__label__'
      expire[lk] = expire[pk]
      label_keys[lk] = true
      add(ints, lk, label, 1)
    elseif lbin and lbin >= 0 then
      local lk = base .. ':num:__label__'
      expire[lk] = expire[pk]
      local y = tonumber(label)
      add(ints, lk, 'bin:' .. lbin, 1); add(ints, lk, 'n', 1)
      add(floats, lk, 'sum', y); add(floats, lk, 'sumsq', y * y)
    end
    joined = joined + 1
  end
  local function window_of(rec)
    local ts = tonumber(string.match(rec, '^(%d+)'))
    return math.floor(ts / J.width) * J.width
  end
  local dups, dup_example = {}, {}
  -- A model without labels: each window's ids in a set that lives `keep` seconds past
  -- the window's end. SMISMEMBER then SADD, a thousand ids per call, instead of a call
  -- per id: a repeat is an id already in the set, or twice in this batch.
  for _, g in ipairs(p.dedupe or {}) do
    local ws, ids = g[1], g[2]
    local k = J.base .. string.format('%d', ws) .. ':ids'
    local fresh = {}
    for c = 1, #ids, 1000 do
      local last = math.min(c + 999, #ids)
      local known = redis.call('SMISMEMBER', k, unpack(ids, c, last))
      for j = 1, #known do
        local id = ids[c + j - 1]
        if known[j] == 1 or fresh[id] then
          dup_pred = dup_pred + 1
          dups[ws] = (dups[ws] or 0) + 1
          if not dup_example[ws] then dup_example[ws] = id end
        else
          fresh[id] = true
        end
      end
      redis.call('SADD', k, unpack(ids, c, last))
    end
    redis.call('EXPIREAT', k, ws + J.width + J.keep)
  end
  for _, e in ipairs(p.preds) do
    local k = J.bkey .. e[3]
    if redis.call('HSETNX', k, e[1], e[2]) == 0 then
      local cur = redis.call('HGET', k, e[1])
      if J.join and string.byte(cur, 1) == 76 then  -- 'L': its label came first
        local lts, lbin, label = string.match(cur, '^L([^|]*)|([^|]*)|(.*)$')
        pair(e[2], label, lts, tonumber(lbin))
        redis.call('HSET', k, e[1], 'J' .. string.match(e[2], '^(%d+)'))
      else
        dup_pred = dup_pred + 1
        local ws = window_of(e[2])
        dups[ws] = (dups[ws] or 0) + 1
        if not dup_example[ws] then dup_example[ws] = e[1] end
      end
    end
  end
  for _, e in ipairs(p.labels) do
    local k = J.bkey .. e[5]
    local cur = redis.call('HGET', k, e[1])
    if not cur then
      redis.call('HSET', k, e[1], 'L' .. e[3] .. '|' .. e[4] .. '|' .. e[2])
      waiting = waiting + 1
    else
      local c = string.byte(cur, 1)
      if c == 74 or c == 76 then  -- 'J' joined already, 'L' the same label waiting
        dup_label = dup_label + 1
      elseif not string.find(cur, '|', 1, true) then
        -- recorded while the model had no label column: nothing to join it with
        unjoinable = unjoinable + 1
        redis.call('HSET', k, e[1], 'J' .. cur)
      else
        pair(cur, e[2], e[3], e[4])
        redis.call('HSET', k, e[1], 'J' .. string.match(cur, '^(%d+)'))
      end
    end
  end
  for ws, n in pairs(dups) do
    local mk = J.base .. string.format('%d', ws) .. ':meta'
    redis.call('HINCRBY', mk, 'duplicates', n)
    redis.call('HSETNX', mk, 'duplicate_example', dup_example[ws])
    redis.call('EXPIREAT', mk, ws + J.width + J.retention)
    touched[ws] = true
  end
  -- Fields that labels and segments name stop growing a hash past its cap: a window's
  -- perf hash past max_fields (later segment values count under s:__other__, later
  -- confusion-matrix cells under cm:__other__|__other__), the joined labels' category
  -- hash past max_categories (under __other__). A stream of garbage labels or a
  -- high-cardinality segment cannot bloat them.
  local function field(key, f)
    local head, cap = string.sub(f, 1, 3), J.max_fields
    if label_keys[key] then
      cap = J.max_categories
    elseif head ~= 'cm:' and string.sub(f, 1, 2) ~= 's:' then
      return f
    end
    if redis.call('HEXISTS', key, f) == 1 or redis.call('HLEN', key) < cap then return f end
    if label_keys[key] then return '__other__' end
    if head == 'cm:' then return 'cm:__other__|__other__' end
    return 's:__other__' .. string.match(f, '(:[^:]*)$')
  end
  for key, h in pairs(ints) do
    for f, v in pairs(h) do redis.call('HINCRBY', key, field(key, f), v) end
    redis.call('EXPIREAT', key, expire[key])
  end
  for key, h in pairs(floats) do
    for f, v in pairs(h) do
      redis.call('HINCRBYFLOAT', key, field(key, f), string.format('%.17g', v))
    end
  end
  for ws, _ in pairs(touched) do
    redis.call('ZADD', J.dirty, p.now, J.rev .. ':' .. string.format('%d', ws))
    redis.call('ZADD', J.windows, ws, string.format('%d', ws))
  end
  local counts = {joined = joined, duplicate_predictions = dup_pred,
                  duplicate_labels = dup_label, labels_before_prediction = waiting,
                  labels_without_record = unjoinable}
  for name, n in pairs(counts) do
    if n > 0 then redis.call('HINCRBY', J.stats, name, n) end
  end
end
for _, f in ipairs(p.fence) do redis.call('HSET', offsets, f[1], f[3]) end
return {1, joined, dup_pred, dup_label, waiting}
"""

# Remove dirty marks only if no apply touched the window since the evaluator read it.
_CLEAR_DIRTY_LUA = """
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i])) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 1
"""


#: Prediction ids are spread over this many hashes per model. Per-key overhead is paid
#: once per bucket, and a bucket of up to 128 ids (Redis's default
#: hash-max-listpack-entries) is a compact listpack: ~500k pending predictions per model
#: stay at ~60 bytes each; beyond, buckets become hash tables at ~110 bytes an id.
ID_BUCKETS = 4096

#: the janitor clears at most this many buckets per evaluation, so it never blocks Redis
MAX_SWEEP_BUCKETS = 64

# The janitor: drop the ids whose time (a prediction's, or a waiting label's) is before
# the cut-off. Redis 7.0 has no per-field expiry, so the buckets are swept instead.
_SWEEP_LUA = """
local cutoff, removed = tonumber(ARGV[1]), 0
for _, k in ipairs(KEYS) do
  local all, old = redis.call('HGETALL', k), {}
  for i = 1, #all, 2 do
    local ts = tonumber(string.match(all[i + 1], '^[JL]?(%d+)'))
    if ts and ts < cutoff then old[#old + 1] = all[i] end
  end
  for c = 1, #old, 1000 do redis.call('HDEL', k, unpack(old, c, math.min(c + 999, #old))) end
  removed = removed + #old
end
return removed
"""

#: a window's performance hash holds at most about this many fields (segments beyond go
#: to s:__other__)
MAX_PERFORMANCE_FIELDS = 2000


# Record an alert and its claim together: a crash between two separate writes would
# leave a claim without the alert (never raised, never re-sent).
_CLAIM_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

# Release the evaluation lease only if it is still ours (it may have expired and been
# taken by another worker meanwhile).
_UNLOCK_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _tag(model: str) -> str:
    return f"sd:{{{model}}}"


@dataclass(slots=True)
class Fence:
    """The offset guard of one (topic, partition) in one model's apply."""

    field: str
    expected: int
    new: int


@dataclass(slots=True)
class JoinDelta:
    """A batch's prediction ids for one model, and its side of the delayed-label join:
    prediction records `[prediction_id, "time|version|class|score", bucket]` and labels
    `[prediction_id, label, label time, label bin or -1, bucket]`; or, for a model that
    joins no labels, just its ids by window (kept only to spot repeats)."""

    joins: bool = True
    predictions: list[list] = field(default_factory=list)
    labels: list[list] = field(default_factory=list)
    #: a model without labels: its prediction ids by window start, to count repeats
    ids_by_window: dict[int, list[str]] = field(default_factory=dict)


@dataclass(slots=True)
class JoinStats:
    joined: int = 0
    duplicate_predictions: int = 0
    duplicate_labels: int = 0
    labels_before_prediction: int = 0


@dataclass(slots=True)
class PendingApply:
    """An apply sent to Redis, its answer not read yet."""

    conn: redis.Connection
    keys: list[str]
    payload: bytes


@dataclass(slots=True)
class ModelHead:
    """What a worker reads once per batch per model before computing deltas."""

    revision: int | None
    offsets: dict[str, int]


def fence_field(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


class Store:
    """All Redis access of streamdrift."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        self._apply = self.redis.register_script(_APPLY_LUA)
        self._clear_dirty = self.redis.register_script(_CLEAR_DIRTY_LUA)
        self._claim = self.redis.register_script(_CLAIM_LUA)
        self._unlock = self.redis.register_script(_UNLOCK_LUA)
        self._sweep = self.redis.register_script(_SWEEP_LUA)

    def ping(self) -> None:
        try:
            self.redis.ping()
        except redis.RedisError as e:
            raise ConnectionProblem(
                f"cannot reach Redis at {self.url}: {e}",
                "start Redis or set STREAMDRIFT_REDIS_URL",
            ) from None

    # ---- reference profiles ------------------------------------------------------------
    def save_profile(self, profile: ReferenceProfile) -> tuple[ReferenceProfile, bool]:
        """Store a profile under the next revision; returns it and whether one was replaced."""
        t = _tag(profile.model_id)
        # Profile and revision change together (WATCH/MULTI): a worker never sees a
        # revision whose profile is not there yet.
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(f"{t}:revision")
                    revision = int(pipe.get(f"{t}:revision") or 0) + 1
                    profile = profile.model_copy(update={"revision": revision})
                    pipe.multi()
                    pipe.set(f"{t}:profile", profile.model_dump_json(indent=2))
                    pipe.set(f"{t}:revision", revision)
                    pipe.sadd("sd:models", profile.model_id)
                    pipe.execute()
                    return profile, revision > 1
                except redis.WatchError:
                    continue

    def load_profile(self, model: str) -> ReferenceProfile | None:
        raw = self.redis.get(f"{_tag(model)}:profile")
        return ReferenceProfile.model_validate_json(raw) if raw else None

    def models(self) -> list[str]:
        return sorted(m.decode() for m in self.redis.smembers("sd:models"))

    def heads(self, models: list[str]) -> dict[str, ModelHead]:
        """Revision and applied offsets of each model, in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for m in models:
            pipe.get(f"{_tag(m)}:revision")
            pipe.hgetall(f"{_tag(m)}:offsets")
        res = pipe.execute()
        out = {}
        for i, m in enumerate(models):
            rev, offs = res[2 * i], res[2 * i + 1]
            out[m] = ModelHead(
                int(rev) if rev is not None else None,
                {k.decode(): int(v) for k, v in offs.items()},
            )
        return out

    # ---- the atomic apply --------------------------------------------------------------
    def apply_batch(
        self,
        profile: ReferenceProfile,
        fences: list[Fence],
        windows: dict[int, WindowSketch],
        invalid: Counter[str],
        join: JoinDelta | None = None,
        now: float | None = None,
    ) -> JoinStats | None:
        """Apply one model's batch deltas and join, and advance its offset fences, all or
        nothing.

        Returns None (and writes nothing) when a fence no longer holds: the caller must
        re-read the heads and recompute. Otherwise what the join did."""
        return self.read_apply(self.send_apply(profile, fences, windows, invalid, join, now))

    def send_apply(
        self,
        profile: ReferenceProfile,
        fences: list[Fence],
        windows: dict[int, WindowSketch],
        invalid: Counter[str],
        join: JoinDelta | None = None,
        now: float | None = None,
    ) -> PendingApply:
        """`apply_batch` in two halves: this one sends the script call and returns at
        once, so the worker can decode its next batch while Redis runs it; `read_apply`
        waits for the answer."""
        keys, payload = self._apply_request(profile, fences, windows, invalid, join, now)
        pool = self.redis.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_command("EVALSHA", self._apply.sha, len(keys), *keys, payload)
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return PendingApply(conn, keys, payload)

    def read_apply(self, pending: PendingApply) -> JoinStats | None:
        pool = self.redis.connection_pool
        try:
            res = pending.conn.read_response()
        except redis.exceptions.NoScriptError:
            # a restarted Redis lost its script cache: nothing ran, so run it again
            pool.release(pending.conn)
            res = self._apply(keys=pending.keys, args=[pending.payload])
        except BaseException:
            pending.conn.disconnect()
            pool.release(pending.conn)
            raise
        else:
            pool.release(pending.conn)
        if int(res[0]) != 1:
            return None
        return JoinStats(*(int(x) for x in res[1:5]))

    def _apply_request(
        self,
        profile: ReferenceProfile,
        fences: list[Fence],
        windows: dict[int, WindowSketch],
        invalid: Counter[str],
        join: JoinDelta | None,
        now: float | None,
    ) -> tuple[list[str], bytes]:
        """The apply script's keys and JSON payload."""
        now = time.time() if now is None else now
        t, rev, cfg = _tag(profile.model_id), profile.revision, profile.config
        keys: list[str] = [f"{t}:offsets"]
        ops: list[list] = []

        def op(key: str, kind: str, data: list, expire_at: int | None = None) -> None:
            keys.append(key)
            ops.append([len(keys), kind, data, expire_at] if expire_at else [len(keys), kind, data])

        if invalid:
            op(f"{t}:dlq", "incr", [x for r, c in invalid.items() for x in (r, c)])
        for start, w in windows.items():
            expire = int(start + cfg.window_seconds + cfg.retention_seconds)
            base = f"{t}:w:{rev}:{start}"
            meta = ["count", w.count]
            meta += [x for v, c in w.versions.items() for x in (f"version:{v}", c)]
            meta += [x for r, c in w.invalid.items() for x in (f"invalid:{r}", c)]
            meta += [x for f, c in w.extra.items() for x in (f"extra:{f}", c)]
            meta += [x for f, c in w.extra_numbers.items() for x in (f"extra_numbers:{f}", c)]
            if w.outliers:
                meta += ["outliers", w.outliers]
            op(f"{base}:meta", "incr", meta, expire)
            if w.outlier_examples:
                examples = [orjson.dumps(e).decode() for e in w.outlier_examples]
                op(
                    f"{base}:outliers",
                    "capped_list",
                    [cfg.outlier_alerts_per_window, *examples],
                    expire,
                )
            if w.extra_sums:
                sums = [x for f, v in w.extra_sums.items() for x in (f"extra_sum:{f}", repr(v))]
                op(f"{base}:meta", "incrf", sums)
            for name, s in w.numeric.items():
                key = f"{base}:num:{name}"
                counts = ["n", s.n, "missing", s.missing]
                if s.out_of_range:
                    counts += ["oor", s.out_of_range]
                counts += [x for i in np.flatnonzero(s.bins) for x in (f"bin:{i}", int(s.bins[i]))]
                op(key, "incr", counts, expire)
                if s.n:
                    op(key, "incrf", ["sum", repr(s.total), "sumsq", repr(s.total_sq)])
                    op(key, "min", ["min", repr(s.minimum)])
                    op(key, "max", ["max", repr(s.maximum)])
            for name, c in w.categorical.items():
                key = f"{base}:cat:{name}"
                data: list = [cfg.max_categories, OTHER]
                data += [x for k, v in c.counts.items() for x in (k, v)]
                op(key, "cap", data, expire)
                if c.missing:
                    op(key, "incr", [MISSING, c.missing])
            op(f"{t}:windows:{rev}", "zadd", [start, start])
            op(f"{t}:dirty", "zadd", [repr(now), f"{rev}:{start}"])
        if windows:
            op(f"{t}:windows:{rev}", "zprune", [now - cfg.retention_seconds - cfg.window_seconds])
        payload: dict = {
            "fence": [[f.field, f.expected, f.new] for f in fences],
            "ops": ops,
            "now": repr(now),
        }
        if join is not None and (join.predictions or join.labels or join.ids_by_window):
            label = profile.label
            payload["ids"] = {
                "join": join.joins,
                "width": cfg.window_seconds,
                "retention": cfg.retention_seconds,
                "base": f"{t}:w:{rev}:",
                "rev": str(rev),
                "task": profile.task,
                "positive": profile.positive_class,
                "label_kind": label.kind if label is not None else None,
                "score_bins": SCORE_BINS,
                "bkey": f"{t}:ids:",
                "dirty": f"{t}:dirty",
                "windows": f"{t}:windows:{rev}",
                "stats": f"{t}:join",
                "max_fields": MAX_PERFORMANCE_FIELDS,
                "max_categories": cfg.max_categories,
                "shift": profile.label_shift(),
                "keep": cfg.dedupe_horizon_seconds,
            }
            payload["dedupe"] = [[ws, ids] for ws, ids in join.ids_by_window.items()]
            payload["preds"] = join.predictions
            payload["labels"] = join.labels
        else:
            payload["preds"] = payload["labels"] = []
        return keys, orjson.dumps(payload)

    def count_unrouted(self, reasons: Counter[str]) -> None:
        """Bad events with no registered model: counted globally (at least once)."""
        if reasons:
            pipe = self.redis.pipeline(transaction=False)
            for r, c in reasons.items():
                pipe.hincrby("sd:dlq", r, c)
            pipe.execute()

    # ---- reading windows ---------------------------------------------------------------
    def window_starts(self, model: str, revision: int) -> list[int]:
        return [int(s) for s in self.redis.zrange(f"{_tag(model)}:windows:{revision}", 0, -1)]

    def read_windows(self, profile: ReferenceProfile, starts: list[int]) -> list[WindowSketch]:
        """Window sketches as stored (features, the model's outputs, performance), in one
        pipelined round trip; expired windows are left out."""
        t, rev = _tag(profile.model_id), profile.revision
        columns = {**profile.features, **profile.outputs()}
        numeric = [n for n, c in columns.items() if c.kind == "numeric"]
        categorical = [n for n, c in columns.items() if c.kind == "categorical"]
        pipe = self.redis.pipeline(transaction=False)
        for s in starts:
            base = f"{t}:w:{rev}:{s}"
            pipe.hgetall(f"{base}:meta")
            for name in numeric:
                pipe.hgetall(f"{base}:num:{name}")
            for name in categorical:
                pipe.hgetall(f"{base}:cat:{name}")
            pipe.hgetall(f"{base}:perf")
            pipe.lrange(f"{base}:outliers", 0, -1)
        res = iter(pipe.execute())
        out = []
        for s in starts:
            raw = next(res)
            example = raw.pop(b"duplicate_example", None)
            meta = {k.decode(): float(v) for k, v in raw.items()}
            w = WindowSketch(
                start=s,
                count=int(meta.pop("count", 0)),
                outliers=int(meta.pop("outliers", 0)),
                duplicates=int(meta.pop("duplicates", 0)),
                duplicate_example=example.decode() if example is not None else None,
            )
            for k, v in meta.items():
                kind, _, name = k.partition(":")
                if kind == "extra_sum":
                    w.extra_sums[name] += v
                    continue
                target = {
                    "version": w.versions,
                    "extra": w.extra,
                    "extra_numbers": w.extra_numbers,
                }.get(kind, w.invalid)
                target[name] += int(v)
            for name in numeric:
                h = {k.decode(): v for k, v in next(res).items()}
                nb = len(columns[name].edges) + 1  # type: ignore[union-attr]
                bins = np.zeros(nb, dtype=np.int64)
                for k, v in h.items():
                    if k.startswith("bin:"):
                        bins[int(k[4:])] = int(v)
                w.numeric[name] = NumericSketch(
                    bins=bins,
                    missing=int(h.get("missing", 0)),
                    n=int(h.get("n", 0)),
                    total=float(h.get("sum", 0.0)),
                    total_sq=float(h.get("sumsq", 0.0)),
                    minimum=float(h.get("min", "inf")),
                    maximum=float(h.get("max", "-inf")),
                    out_of_range=int(h.get("oor", 0)),
                )
            for name in categorical:
                h = {k.decode(): int(v) for k, v in next(res).items()}
                missing = h.pop(MISSING, 0)
                w.categorical[name] = CategoricalSketch(Counter(h), missing)
            perf = next(res)
            w.outlier_examples = [orjson.loads(e) for e in next(res)]
            if perf:
                w.performance = PerformanceSketch.from_hash(
                    {k.decode(): v.decode() for k, v in perf.items()}
                )
            if meta or w.count or perf:
                out.append(w)
        return out

    def read_performance(self, profile: ReferenceProfile, starts: list[int]) -> list[WindowSketch]:
        """Only the event counts and performance sums of windows (the recent baseline)."""
        t, rev = _tag(profile.model_id), profile.revision
        pipe = self.redis.pipeline(transaction=False)
        for s in starts:
            pipe.hget(f"{t}:w:{rev}:{s}:meta", "count")
            pipe.hgetall(f"{t}:w:{rev}:{s}:perf")
        res = pipe.execute()
        out = []
        for i, s in enumerate(starts):
            count, perf = res[2 * i], res[2 * i + 1]
            w = WindowSketch(start=s, count=int(count or 0))
            if perf:
                w.performance = PerformanceSketch.from_hash(
                    {k.decode(): v.decode() for k, v in perf.items()}
                )
            out.append(w)
        return out

    # ---- data-quality episodes ------------------------------------------------------------
    def quality_episodes(self, model: str) -> dict[str, tuple[int, int]]:
        raw = self.redis.hgetall(f"{_tag(model)}:quality")
        out = {}
        for k, v in raw.items():
            first, _, last = v.decode().partition(":")
            out[k.decode()] = (int(first), int(last))
        return out

    def save_quality_episodes(self, model: str, episodes: dict[str, tuple[int, int]]) -> None:
        if episodes:
            self.redis.hset(
                f"{_tag(model)}:quality",
                mapping={k: f"{a}:{b}" for k, (a, b) in episodes.items()},
            )

    # ---- the prediction-id janitor -----------------------------------------------------
    def sweep_ids(self, model: str, horizon: int, now: float) -> int:
        """Drop ids older than `horizon` seconds, a few buckets per call: the whole ring is
        swept once per tenth of the horizon (between a minute and an hour), so an id
        outlives its horizon by at most that. Call under the evaluation lease. Returns the
        ids removed."""
        t = _tag(model)
        period = min(3600.0, max(60.0, horizon / 10))
        cursor, at = self.redis.hmget(f"{t}:sweep", "cursor", "at")
        if at is None:
            self.redis.hset(f"{t}:sweep", mapping={"cursor": 0, "at": repr(now)})
            return 0
        cursor, at = int(cursor or 0), max(float(at), now - period)
        due = min(int(ID_BUCKETS * (now - at) / period), MAX_SWEEP_BUCKETS)
        if due < 1:
            return 0
        keys = [f"{t}:ids:{(cursor + i) % ID_BUCKETS}" for i in range(due)]
        removed = int(self._sweep(keys=keys, args=[int(now - horizon)]))
        at += due * period / ID_BUCKETS
        self.redis.hset(
            f"{t}:sweep", mapping={"cursor": (cursor + due) % ID_BUCKETS, "at": repr(at)}
        )
        return removed

    def join_stats(self, model: str) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(f"{_tag(model)}:join").items()}

    def model_dlq_counts(self, model: str) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall(f"{_tag(model)}:dlq").items()}

    def unrouted_dlq_counts(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in self.redis.hgetall("sd:dlq").items()}

    # ---- evaluation scheduling ---------------------------------------------------------
    def dirty_windows(self, model: str) -> list[tuple[str, float]]:
        return [
            (m.decode(), s)
            for m, s in self.redis.zrange(f"{_tag(model)}:dirty", 0, -1, withscores=True)
        ]

    def clear_dirty(self, model: str, marks: list[tuple[str, float]]) -> None:
        if marks:
            args = [x for m, s in marks for x in (m, repr(s))]
            self._clear_dirty(keys=[f"{_tag(model)}:dirty"], args=args)

    def try_lock_evaluation(self, model: str, owner: str, lease_ms: int = 120_000) -> bool:
        return bool(self.redis.set(f"{_tag(model)}:eval_lock", owner, nx=True, px=lease_ms))

    def unlock_evaluation(self, model: str, owner: str) -> None:
        self._unlock(keys=[f"{_tag(model)}:eval_lock"], args=[owner])

    # ---- alerts ------------------------------------------------------------------------
    def claim_alert(self, model: str, alert_id: str, alert_json: bytes, now: float) -> bool:
        """Record an alert once; False when this alert_id was raised before (by anyone)."""
        t = _tag(model)
        keys = [f"{t}:alerts", f"{t}:alert_state"]
        return bool(self._claim(keys=keys, args=[alert_id, alert_json, f"claimed:{now!r}"]))

    def mark_published(self, model: str, alert_ids: list[str], now: float) -> None:
        if alert_ids:
            self.redis.hset(
                f"{_tag(model)}:alert_state", mapping={a: f"published:{now!r}" for a in alert_ids}
            )

    def prune_alerts(self, model: str, older_than: float, now: float) -> int:
        """Forget alerts published before `older_than`, at most once an hour: the windows
        they were raised for are gone, so nothing can raise them again, and the alert
        hashes would otherwise grow for ever. Returns how many went."""
        t = _tag(model)
        last = self.redis.hget(f"{t}:sweep", "alerts_pruned_at")
        if last is not None and now - float(last) < 3600:
            return 0
        self.redis.hset(f"{t}:sweep", "alerts_pruned_at", repr(now))
        old = []
        for aid, state in self.redis.hscan_iter(f"{t}:alert_state", count=1000):
            kind, _, at = state.decode().partition(":")
            if kind == "published" and float(at) < older_than:
                old.append(aid)
        pipe = self.redis.pipeline(transaction=False)
        for i in range(0, len(old), 1000):
            pipe.hdel(f"{t}:alerts", *old[i : i + 1000])
            pipe.hdel(f"{t}:alert_state", *old[i : i + 1000])
        pipe.execute()
        return len(old)

    def unpublished_alerts(self, model: str, older_than: float) -> list[bytes]:
        """Alerts claimed by a worker that died before publishing them."""
        t = _tag(model)
        stale = []
        for aid, state in self.redis.hgetall(f"{t}:alert_state").items():
            kind, _, at = state.decode().partition(":")
            if kind == "claimed" and float(at) < older_than:
                stale.append(aid)
        if not stale:
            return []
        return [a for a in self.redis.hmget(f"{t}:alerts", stale) if a is not None]

    def alerts(self, model: str) -> list[dict]:
        raw = self.redis.hvals(f"{_tag(model)}:alerts")
        return sorted((orjson.loads(a) for a in raw), key=lambda a: a["created_at"])
