#!lua
-- The atomic apply of one model's share of a batch: offset fences, window deltas and the
-- delayed-label join, all or nothing. Redis runs a script without interruption but does
-- not undo the writes of a script that fails half-way, so this one reads and checks
-- everything first and writes only when nothing can fail any more. The shebang makes
-- Redis refuse the whole call up front when it is out of memory.
--
-- Every key it touches is passed in KEYS and named by position in the payload: the
-- script never builds a key name, so on Redis Cluster a resharding moves the call, not
-- half of its keys.
--
-- KEYS[1]   the model's offsets hash (the fences)
-- KEYS[2]   the model's revision: the deltas were computed with that profile
-- KEYS[i]   every other key the call may touch
-- ARGV[1]   JSON payload, see store/applies.py:
--   fence = {{field, expected offset, new offset}, ...}
--   ops   = {{key, kind, data, expire_at}, ...}      kind: a Merge of store/windows.py,
--                                                    or cap, capped_list, zadd, zprune,
--                                                    pfadd (store/depth_fields.py)
--   join  = {...} or absent                          the label join, see below
--   now   = "<unix time>"
--   revision = "<the revision the deltas were computed with>"
-- Returns
--   {1, joined, duplicate predictions, duplicate labels, labels waiting, µs}   applied;
--                                    µs: the script's own run time (Redis's clock), by
--                                    which the worker sizes its batches
--                                    (Settings.max_apply_ms)
--   {0, field, current offset}       a fence moved (another worker): nothing written
--   {2, window start, ...}           the join needs windows KEYS lacks: nothing written
--   {3, reason}                      invalid input: nothing written
--   {4, revision or ""}              the model is not at that revision (registered again,
--                                    or its state is gone): nothing written

local started = redis.call('TIME')
local p = cjson.decode(ARGV[1])
local offsets = KEYS[1]
local nkeys = #KEYS
-- Float deltas are bounded far below the double's range: sums of them stay finite.
local BOUND = 1e250
local MAX_INT = 9007199254740992

local function is_key(i)
  return type(i) == 'number' and i >= 1 and i <= nkeys and math.floor(i) == i
end
local function is_int(v)
  return type(v) == 'number' and v == math.floor(v) and v > -MAX_INT and v < MAX_INT
end
local function is_num(s)
  local v = tonumber(s)
  return v ~= nil and v == v and v > -BOUND and v < BOUND
end
local function invalid(reason) return {3, reason} end
-- field/value pairs from d[from] on: whole pairs, each field a string (else a write fails)
local function fields_ok(d, from)
  if (#d - from + 1) % 2 ~= 0 then return false end
  for j = from, #d, 2 do
    if type(d[j]) ~= 'string' then return false end
  end
  return true
end

-- 1. the model and its fences --------------------------------------------------------------
-- A Redis that lost the model's keys (restarted empty, a cluster shard emptied) has no
-- revision: counting into it would leave fences that hide what was lost.
local revision = redis.call('GET', KEYS[2])
if revision ~= p.revision then return {4, revision or ''} end
for _, f in ipairs(p.fence) do
  if type(f[1]) ~= 'string' or not is_int(f[2]) or not is_int(f[3]) then
    return invalid('fence ' .. tostring(f[1]))
  end
  local cur = redis.call('HGET', offsets, f[1])
  if cur then cur = tonumber(cur) else cur = -1 end
  if cur ~= f[2] then return {0, f[1], tostring(cur)} end
end

-- 2. the window deltas: checked ------------------------------------------------------------
for _, op in ipairs(p.ops) do
  local key, kind, d = op[1], op[2], op[3]
  if not is_key(key) or type(d) ~= 'table' then return invalid('op key ' .. tostring(key)) end
  if op[4] ~= nil and not is_int(op[4]) then return invalid('expiry ' .. tostring(op[4])) end
  if (kind == 'incr' or kind == 'incrf' or kind == 'min' or kind == 'max' or kind == 'first')
      and not fields_ok(d, 1) then
    return invalid('fields of ' .. kind)
  end
  if kind == 'incr' then
    for j = 2, #d, 2 do
      if not is_int(d[j]) then return invalid('count ' .. tostring(d[j - 1])) end
    end
  elseif kind == 'incrf' or kind == 'min' or kind == 'max' then
    for j = 2, #d, 2 do
      if not is_num(d[j]) then
        return invalid('value of ' .. tostring(d[j - 1]) .. ' is not a finite number')
      end
    end
  elseif kind == 'first' then
    for j = 2, #d, 2 do
      if type(d[j]) ~= 'string' then return invalid('value of ' .. tostring(d[j - 1])) end
    end
  elseif kind == 'cap' then
    if not is_int(d[1]) or not is_key(d[2]) or type(d[3]) ~= 'string' or not fields_ok(d, 4) then
      return invalid('cap')
    end
    for j = 5, #d, 2 do
      if not is_int(d[j]) then return invalid('count of ' .. tostring(d[j - 1])) end
    end
  elseif kind == 'capped_list' then
    if not is_int(d[1]) then return invalid('capped_list') end
    for j = 2, #d do
      if type(d[j]) ~= 'string' then return invalid('capped_list') end
    end
  elseif kind == 'zadd' then
    if not is_num(d[1]) or not (type(d[2]) == 'string' or is_int(d[2])) then
      return invalid(kind)
    end
  elseif kind == 'zprune' then
    if not is_num(d[1]) then return invalid(kind) end
  elseif kind == 'pfadd' then
    -- values for a HyperLogLog: strings, and a key that is one or none yet
    if #d == 0 then return invalid(kind) end
    for j = 1, #d do
      if type(d[j]) ~= 'string' then return invalid(kind) end
    end
    local t = redis.call('TYPE', KEYS[key])['ok']
    local hll = t == 'string' and redis.call('GETRANGE', KEYS[key], 0, 3) == 'HYLL'
    if t ~= 'none' and not hll then
      return invalid(kind .. ': the key holds no HyperLogLog')
    end
  else
    return invalid('unknown op ' .. tostring(kind))
  end
end

-- 3. the join: every read, every computed delta, before any write -------------------------
local J = p.join
local joined, dup_pred, dup_label, waiting, unjoinable = 0, 0, 0, 0, 0
local ints, floats, expire = {}, {}, {}   -- key index -> field -> delta; key -> time
local records = {}                        -- key index -> id -> new record (an overlay)
local touched, dups, dup_example = {}, {}, {}
local label_keys = {}
local adds = {}                           -- dedupe: key index -> ids to add
local W, missing, nmissing = {}, {}, 0

local function add(t, key, f, v)
  local h = t[key]
  if not h then h = {}; t[key] = h end
  h[f] = (h[f] or 0) + v
end

if J then
  for _, k in ipairs({J.dirty, J.windows, J.stats}) do
    if not is_key(k) then return invalid('join key') end
  end
  if not (is_int(J.width) and J.width > 0 and is_int(J.score_bins) and J.score_bins > 0
          and is_int(J.max_fields) and is_int(J.max_categories) and is_int(J.keep)
          and type(J.shift) == 'number' and type(J.rev) == 'string' and is_num(p.now)) then
    return invalid('join settings')
  end
  -- A profile's score layout (absent: equal-width bins): ascending edges, at most 255.
  local EDGES = J.score_edges
  if EDGES ~= nil then
    if type(EDGES) ~= 'table' or #EDGES > 255 or not is_int(J.calibration_bins)
        or J.calibration_bins < 1 then
      return invalid('score edges')
    end
    for i = 1, #EDGES do
      if not is_num(EDGES[i]) or (i > 1 and EDGES[i] <= EDGES[i - 1]) then
        return invalid('score edges')
      end
    end
  end
  if J.parts ~= nil and not (is_int(J.parts) and J.parts >= 1 and J.parts <= 60) then
    return invalid('sub-windows')
  end
  -- the sequential scan's field names per part, spelled once (sequential.SUB_FIELDS)
  local PART = {}
  for j = 0, (J.parts or 0) - 1 do
    local f = {}
    for _, stat in ipairs({'en', 'e', 'ln', 'l', 'l2', 'an', 'a', 'a2'}) do
      f[stat] = 'q:' .. j .. ':' .. stat
    end
    PART[j] = f
  end
  -- The bin of a score: the number of edges at or below it (performance.score_bin), or
  -- the equal-width bin.
  local function score_bin(sc)
    if EDGES then
      local lo, hi = 1, #EDGES + 1  -- the first edge above sc
      while lo < hi do
        local mid = math.floor((lo + hi) / 2)
        if EDGES[mid] > sc then hi = mid else lo = mid + 1 end
      end
      return lo - 1
    end
    local bin = math.floor(sc * J.score_bins)
    if bin < 0 then bin = 0 elseif bin >= J.score_bins then bin = J.score_bins - 1 end
    return bin
  end
  -- The calibration bin of a score: the number of edges k / bins at or below it
  -- (performance.calibration_bin).
  local function calibration_bin(sc)
    local c = 0
    for k = 1, J.calibration_bins - 1 do
      if sc >= k / J.calibration_bins then c = k end
    end
    return c
  end
  for _, w in ipairs(J.wkeys) do
    if not (is_int(w[1]) and is_key(w[2]) and is_key(w[3]) and is_key(w[4]) and is_int(w[5])) then
      return invalid('window keys')
    end
    W[w[1]] = {meta = w[2], perf = w[3], label = w[4], expire = w[5]}
  end

  local function window(ws)
    local w = W[ws]
    if not w and not missing[ws] then missing[ws] = true; nmissing = nmissing + 1 end
    return w
  end

  local function record(k, id)
    local o = records[k]
    if o then
      local v = o[id]
      if v ~= nil then return v end
    end
    return redis.call('HGET', KEYS[k], id)
  end
  local function set_record(k, id, v)
    local o = records[k]
    if not o then o = {}; records[k] = o end
    o[id] = v
  end

  -- What a pair would refuse, checked when each side arrives too: a label or a record
  -- stored without these checks would make its partner's valid batch be refused instead.
  local RECORD = '^(%d+)|[^|]*|([^|]*)|([^|]*)(.*)$'
  local SLICED = '^%d+|([^|]*)|'
  -- The slices a labelled pair also counts in, as perf-field prefixes: its version's
  -- ("[v=2.0]") when the model keeps version slices, and each declared segment key's
  -- ("[region=eu]"); the worker wrote both already folded (capped) into the record.
  local function slice_prefixes(rec, segs)
    local out = {''}
    if J.versions then
      local v = string.match(rec, SLICED)
      if v and v ~= '' then out[#out + 1] = '[v=' .. v .. ']' end
    end
    if J.slice_keys then
      for sk, sv in string.gmatch(segs, '([^,|=]+)=([^,|]*)') do
        if J.slice_keys[sk] then out[#out + 1] = '[' .. sk .. '=' .. sv .. ']' end
      end
    end
    return out
  end
  local function label_problem(label)
    if J.task ~= 'regression' then return nil end
    local y = tonumber(label)
    if not (y and is_num(y) and math.abs(y) <= 1e100 and (y == 0 or math.abs(y) >= 1e-100)) then
      return 'regression label ' .. tostring(label)
    end
  end
  local function record_problem(rec)
    local pts, _, score = string.match(rec, RECORD)
    if not tonumber(pts) then return 'prediction record ' .. rec end
    if J.task == 'regression' then
      local yhat = tonumber(score)
      if yhat and not (is_num(yhat) and math.abs(yhat) <= 1e100) then
        return 'prediction ' .. tostring(score)
      end
    elseif score ~= '' and J.positive and J.positive ~= cjson.null then
      local sc = tonumber(score)
      if not (sc and is_num(sc)) then return 'score ' .. score end
    end
  end

  -- One labelled pair: its deltas to the prediction's window. Returns an error or nil.
  local function pair(rec, label, lts, lbin)
    local err = record_problem(rec) or label_problem(label)
    if err then return err end
    local pts, cls, score, segs = string.match(rec, RECORD)
    pts = tonumber(pts)
    local ws = math.floor(pts / J.width) * J.width
    local w = window(ws)
    if not w then return nil end
    local pk = w.perf
    expire[pk] = w.expire
    touched[ws] = true
    local pres = slice_prefixes(rec, segs)
    local function padd(t, f, v)
      for i = 1, #pres do add(t, pk, pres[i] .. f, v) end
    end
    padd(ints, 'n', 1)
    local delay = tonumber(lts) - pts
    if delay < 0 then delay = 0 end
    padd(floats, 'dsum', delay)
    local b = 0
    if delay >= 1 then b = 1 + math.floor(math.log(delay) / math.log(2) + 1e-9) end
    padd(ints, 'd:' .. b, 1)
    -- the sequential scan's sums (sequential.SUB_FIELDS): the pair's loss in its part of
    -- the window, by the prediction's time, for the whole model only
    local q
    if J.parts then
      local j = math.floor((pts - ws) * J.parts / J.width)
      if j >= J.parts then j = J.parts - 1 end
      q = PART[j]
    end
    local y, yhat
    if J.task == 'regression' then
      y, yhat = tonumber(label), tonumber(score)
      if yhat then
        local e = yhat - y
        padd(floats, 'ae', math.abs(e)); padd(floats, 'se', e * e)
        local c = y - J.shift  -- the label's reference mean: no cancellation in R²
        padd(floats, 'err', e); padd(floats, 'y', c); padd(floats, 'y2', c * c)
        if y ~= 0 then
          padd(floats, 'ape', math.abs(e) / math.abs(y)); padd(ints, 'nape', 1)
        end
        if q then
          add(floats, pk, q.an, 1); add(floats, pk, q.a, math.abs(e))
          add(floats, pk, q.a2, e * e)
        end
      end
    else
      if cls ~= '' then
        padd(ints, 'cm:' .. label .. '|' .. cls, 1)
        if q then
          add(floats, pk, q.en, 1)
          if label ~= cls then add(floats, pk, q.e, 1) end
        end
      end
      if score ~= '' and J.positive and J.positive ~= cjson.null then
        local sc = tonumber(score)
        local bin = score_bin(sc)
        if EDGES then padd(floats, 'cs:' .. calibration_bin(sc), sc) end
        local pc = math.min(math.max(sc, 1e-15), 1 - 1e-15)
        local loss
        if label == J.positive then
          padd(ints, 'pos:' .. bin, 1); loss = -math.log(pc)
          padd(floats, 'brier', (sc - 1) * (sc - 1))
        else
          padd(ints, 'neg:' .. bin, 1); loss = -math.log(1 - pc)
          padd(floats, 'brier', sc * sc)
        end
        padd(floats, 'll', loss); padd(floats, 'll2', loss * loss); padd(ints, 'nll2', 1)
        if q then
          add(floats, pk, q.ln, 1); add(floats, pk, q.l, loss)
          add(floats, pk, q.l2, loss * loss)
        end
        padd(ints, 'ns', 1)
      end
    end
    -- per segment: labelled count and correct classes, or absolute and squared errors
    for sk, sv in string.gmatch(segs, '([^,|=]+)=([^,|]*)') do
      local sp = 's:' .. sk .. '=' .. sv .. ':'
      add(ints, pk, sp .. 'n', 1)
      if J.task == 'regression' then
        if yhat then
          add(floats, pk, sp .. 'ae', math.abs(yhat - y))
          add(floats, pk, sp .. 'se', (yhat - y) ^ 2)
        end
      elseif cls ~= '' then
        add(ints, pk, sp .. 'ok', (label == cls) and 1 or 0)
      end
    end
    local lk = w.label
    expire[lk] = w.expire
    if J.label_kind == 'categorical' then
      label_keys[lk] = w.meta
      add(ints, lk, label, 1)
    elseif lbin and lbin >= 0 then
      local v = tonumber(label)
      add(ints, lk, 'bin:' .. lbin, 1); add(ints, lk, 'n', 1)
      add(floats, lk, 'sum', v); add(floats, lk, 'sumsq', v * v)
    end
    joined = joined + 1
    return nil
  end

  local function duplicate(ws, id)
    dup_pred = dup_pred + 1
    dups[ws] = (dups[ws] or 0) + 1
    -- an id of a model without labels carries its version after \31 (see ids_by_window)
    if not dup_example[ws] then dup_example[ws] = string.match(id, '^([^\31]*)') end
    window(ws)
  end

  -- Shadow traffic: one id scored by several versions, each its own prediction. Waiting
  -- predictions of one id are kept one per line; a joined id remembers its label and
  -- its versions (with a champion set, their whole records), so that a version scoring
  -- the id later still joins, and only the same id under the same version is a repeat:
  --   "<rec>[\n<rec>...]"                           predictions waiting for the label
  --   "J<time>"                                     joined, no version (as ever)
  --   "J<time>\t<rec or version>[\n...]\t<label time>|<bin>|<label>"
  -- the champion version, or nil (JSON null decodes to a value Lua takes for true)
  local CHAMPION = nil
  if type(J.champion) == 'string' then CHAMPION = J.champion end
  local function version_of(line)
    if string.find(line, '|', 1, true) then return string.match(line, SLICED) or '' end
    return line
  end
  local function has_version(lines, v)
    for line in string.gmatch(lines, '[^\n]+') do
      if version_of(line) == v then return true end
    end
    return false
  end
  local function joined(pts, recs, lts, lbin, label)
    local versioned = false
    for _, r in ipairs(recs) do
      if version_of(r) ~= '' then versioned = true end
    end
    if not versioned then return 'J' .. pts end
    local kept = {}
    for i, r in ipairs(recs) do kept[i] = CHAMPION and r or version_of(r) end
    return 'J' .. pts .. '\t' .. table.concat(kept, '\n') .. '\t' .. lts .. '|' .. lbin .. '|' .. label
  end

  -- Champion against challenger on one labelled id: paired deltas in the champion
  -- prediction's window, fields "[cc=<challenger>]...": n; mc:<yn><yn> (each side right
  -- or not: McNemar); jp:/jn:<bin a>,<bin b> (the two scores of a positive/negative:
  -- DeLong); nr, aea, aeb, d2 (absolute errors: paired t).
  local function compare(champ, chal, label)
    local cpts, _, ccls, cscore = string.match(champ, '^(%d+)|([^|]*)|([^|]*)|([^|]*)')
    local _, xver, xcls, xscore = string.match(chal, '^(%d+)|([^|]*)|([^|]*)|([^|]*)')
    local ws = math.floor(tonumber(cpts) / J.width) * J.width
    local w = window(ws)
    if not w then return end
    local pk = w.perf
    expire[pk] = w.expire
    touched[ws] = true
    local pre = '[cc=' .. xver .. ']'
    add(ints, pk, pre .. 'n', 1)
    if J.task == 'regression' then
      local y, a, b = tonumber(label), tonumber(cscore), tonumber(xscore)
      if a and b then
        local ea, eb = math.abs(a - y), math.abs(b - y)
        add(ints, pk, pre .. 'nr', 1)
        add(floats, pk, pre .. 'aea', ea); add(floats, pk, pre .. 'aeb', eb)
        add(floats, pk, pre .. 'd2', (ea - eb) * (ea - eb))
      end
      return
    end
    if ccls ~= '' and xcls ~= '' then
      local a = (ccls == label) and 'y' or 'n'
      local b = (xcls == label) and 'y' or 'n'
      add(ints, pk, pre .. 'mc:' .. a .. b, 1)
    end
    if cscore ~= '' and xscore ~= '' and J.positive and J.positive ~= cjson.null then
      local function bin(sc)
        local b = math.floor(tonumber(sc) * J.joint_bins)
        if b < 0 then return 0 elseif b >= J.joint_bins then return J.joint_bins - 1 end
        return b
      end
      local side = (label == J.positive) and 'jp:' or 'jn:'
      add(ints, pk, pre .. side .. bin(cscore) .. ',' .. bin(xscore), 1)
    end
  end
  -- every champion/challenger pair among an id's records, or only those with `new`
  local function compare_all(recs, label, new)
    if not CHAMPION then return end
    local champ
    for _, r in ipairs(recs) do
      if version_of(r) == CHAMPION then champ = r end
    end
    if not champ then return end
    for _, r in ipairs(recs) do
      if r ~= champ and version_of(r) ~= CHAMPION and (not new or r == new or champ == new) then
        compare(champ, r, label)
      end
    end
  end
  local function lines(text)
    local out = {}
    for line in string.gmatch(text, '[^\n]+') do out[#out + 1] = line end
    return out
  end

  -- A model without labels: each window's ids in a set, SMISMEMBER a thousand at a time;
  -- a repeat is an id already in the set, or twice in this batch.
  for _, g in ipairs(J.dedupe or {}) do
    local k, ws, ids = g[1], g[2], g[3]
    if not is_key(k) or not is_int(ws) then return invalid('dedupe') end
    local fresh, new = {}, {}
    for c = 1, #ids, 1000 do
      local last = math.min(c + 999, #ids)
      local known = redis.call('SMISMEMBER', KEYS[k], unpack(ids, c, last))
      for j = 1, #known do
        local id = ids[c + j - 1]
        if known[j] == 1 or fresh[id] then
          duplicate(ws, id)
        else
          fresh[id] = true
          new[#new + 1] = id
        end
      end
    end
    adds[#adds + 1] = {k, ws, new}
  end

  -- Predictions: one record per id. A record already there is a repeat, unless it is
  -- a label that came first ("L..."): then the pair meets here.
  for _, e in ipairs(J.preds) do
    local id, rec, k = e[1], e[2], e[3]
    if type(id) ~= 'string' or type(rec) ~= 'string' or not is_key(k) then
      return invalid('prediction entry')
    end
    local err = record_problem(rec)
    if err then return invalid(err) end
    local pts = tonumber(string.match(rec, '^(%d+)|'))
    local v = version_of(rec)
    local cur = record(k, id)
    local c = cur and string.byte(cur, 1)
    if not cur then
      set_record(k, id, rec)
    elseif J.join and c == 76 then  -- 'L': its label came first
      local lts, lbin, label = string.match(cur, '^L([^|]*)|([^|]*)|(.*)$')
      local err = pair(rec, label, lts, tonumber(lbin))
      if err then return invalid(err) end
      set_record(k, id, joined(pts, {rec}, lts, lbin, label))
    elseif c == 74 then  -- 'J': joined; another version scoring it later joins too
      local jpts, kept, lts, lbin, label =
        string.match(cur, '^J(%d+)\t([^\t]*)\t([^|]*)|([^|]*)|(.*)$')
      if jpts and v ~= '' and not has_version(kept, v) then
        local err = pair(rec, label, lts, tonumber(lbin))
        if err then return invalid(err) end
        local recs = lines(kept)
        recs[#recs + 1] = rec
        compare_all(recs, label, rec)
        set_record(k, id, joined(jpts, recs, lts, lbin, label))
      else
        duplicate(math.floor(pts / J.width) * J.width, id)
      end
    elseif c ~= 76 and v ~= '' and string.find(cur, '|', 1, true)
        and not has_version(cur, v) then
      set_record(k, id, cur .. '\n' .. rec)  -- shadow: the same id, another version
    else
      duplicate(math.floor(pts / J.width) * J.width, id)
    end
  end

  -- Labels: the pair meets here when the prediction came first; else the label waits.
  for _, e in ipairs(J.labels) do
    local id, label, lts, lbin, k = e[1], e[2], e[3], e[4], e[5]
    if type(id) ~= 'string' or type(label) ~= 'string' or not is_int(lts)
        or not is_int(lbin) or not is_key(k) then
      return invalid('label entry')
    end
    local err = label_problem(label)
    if err then return invalid(err) end
    local cur = record(k, id)
    if not cur then
      set_record(k, id, 'L' .. lts .. '|' .. lbin .. '|' .. label)
      waiting = waiting + 1
    else
      local c = string.byte(cur, 1)
      if c == 74 or c == 76 then  -- 'J' joined already, 'L' the same label waiting
        dup_label = dup_label + 1
      elseif not string.find(cur, '|', 1, true) then
        -- recorded while the model had no label column: nothing to join it with
        unjoinable = unjoinable + 1
        set_record(k, id, 'J' .. cur)
      else
        local recs = lines(cur)
        for _, r in ipairs(recs) do
          local err = pair(r, label, lts, lbin)
          if err then return invalid(err) end
        end
        compare_all(recs, label, nil)
        set_record(k, id, joined(string.match(cur, '^(%d+)'), recs, lts, lbin, label))
      end
    end
  end

  if nmissing > 0 then
    local out = {2}
    for ws, _ in pairs(missing) do out[#out + 1] = ws end
    return out
  end
  for _, h in pairs(floats) do
    for f, v in pairs(h) do
      if not is_num(v) then return invalid('computed ' .. f .. ' is not a finite number') end
    end
  end
end

-- 4. writes: nothing below can fail ------------------------------------------------------
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
  elseif kind == 'first' then
    for j = 1, #d, 2 do redis.call('HSETNX', key, d[j], d[j + 1]) end
  elseif kind == 'cap' then
    -- categories beyond the cap are counted in another hash's field (d[2], d[3])
    local cap, other, other_field = d[1], KEYS[d[2]], d[3]
    for j = 4, #d, 2 do
      if redis.call('HEXISTS', key, d[j]) == 1 or redis.call('HLEN', key) < cap then
        redis.call('HINCRBY', key, d[j], d[j + 1])
      else
        redis.call('HINCRBY', other, other_field, d[j + 1])
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
  elseif kind == 'pfadd' then
    for c = 1, #d, 1000 do redis.call('PFADD', key, unpack(d, c, math.min(c + 999, #d))) end
  end
  if op[4] and op[4] > 0 then redis.call('EXPIREAT', key, op[4]) end
end

if J then
  for k, o in pairs(records) do
    local flat = {}
    for id, v in pairs(o) do flat[#flat + 1] = id; flat[#flat + 1] = v end
    for c = 1, #flat, 1000 do
      redis.call('HSET', KEYS[k], unpack(flat, c, math.min(c + 999, #flat)))
    end
  end
  for _, a in ipairs(adds) do
    local k, ws, ids = KEYS[a[1]], a[2], a[3]
    for c = 1, #ids, 1000 do
      redis.call('SADD', k, unpack(ids, c, math.min(c + 999, #ids)))
    end
    redis.call('EXPIREAT', k, ws + J.width + J.keep)
  end
  for ws, n in pairs(dups) do
    local w = W[ws]
    redis.call('HINCRBY', KEYS[w.meta], 'duplicates', n)
    redis.call('HSETNX', KEYS[w.meta], 'duplicate_example', dup_example[ws])
    redis.call('EXPIREAT', KEYS[w.meta], w.expire)
    touched[ws] = true
  end
  -- Fields that labels and segments name stop growing a hash past its cap: a window's
  -- perf hash past max_fields (later segment values count under s:__other__, later
  -- confusion-matrix cells in cm_other), the joined labels' category hash past
  -- max_categories (counted in the window's meta, cat_other:__label__). A stream of
  -- garbage labels or a high-cardinality segment cannot bloat them. The segment part is
  -- "<key>=<value>", so no segment is ever spelled "__other__".
  local function capped(k, key, f, v)
    local meta = label_keys[k]
    if meta then
      if redis.call('HEXISTS', key, f) == 1 or redis.call('HLEN', key) < J.max_categories then
        return key, f
      end
      return KEYS[meta], 'cat_other:__label__'
    end
    local pre, inner = string.match(f, '^(%[[^%]]*%])(.*)$')
    if not pre then pre, inner = '', f end
    local head = string.sub(inner, 1, 3)
    if head ~= 'cm:' and string.sub(inner, 1, 2) ~= 's:' then return key, f end
    if redis.call('HEXISTS', key, f) == 1 or redis.call('HLEN', key) < J.max_fields then
      return key, f
    end
    if head == 'cm:' then return key, pre .. 'cm_other' end
    return key, 's:__other__' .. string.match(inner, '(:[^:]*)$')
  end
  for k, h in pairs(ints) do
    local key = KEYS[k]
    for f, v in pairs(h) do
      local hk, hf = capped(k, key, f, v)
      redis.call('HINCRBY', hk, hf, v)
    end
    redis.call('EXPIREAT', key, expire[k])
  end
  for k, h in pairs(floats) do
    local key = KEYS[k]
    for f, v in pairs(h) do
      local hk, hf = capped(k, key, f, v)
      redis.call('HINCRBYFLOAT', hk, hf, string.format('%.17g', v))
    end
    redis.call('EXPIREAT', key, expire[k])
  end
  for ws, _ in pairs(touched) do
    redis.call('ZADD', KEYS[J.dirty], p.now, J.rev .. ':' .. string.format('%d', ws))
    redis.call('ZADD', KEYS[J.windows], ws, string.format('%d', ws))
  end
  local counts = {joined = joined, duplicate_predictions = dup_pred,
                  duplicate_labels = dup_label, labels_before_prediction = waiting,
                  labels_without_record = unjoinable}
  for name, n in pairs(counts) do
    if n > 0 then redis.call('HINCRBY', KEYS[J.stats], name, n) end
  end
end

for _, f in ipairs(p.fence) do redis.call('HSET', offsets, f[1], f[3]) end
local ended = redis.call('TIME')
local took = (tonumber(ended[1]) - tonumber(started[1])) * 1000000
  + tonumber(ended[2]) - tonumber(started[2])
return {1, joined, dup_pred, dup_label, waiting, took}
