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
--   ops   = {{key, kind, data, expire_at}, ...}      kind: a Merge of store/window_fields.py,
--                                                    or cap, capincr, capincrf,
--                                                    capped_list, zadd, zprune, pfadd
--                                                    (store/depth_fields.py); zmax, zset
--                                                    {member, score, ...}: ZADD GT / ZADD
--                                                    (the event-time watermarks, written
--                                                    with the counts they describe,
--                                                    store/watermarks.py); the sums
--                                                    of the join's labelled pairs too;
--                                                    or push {ARGV index}: that blob
--                                                    pushed onto a list (a window's
--                                                    numeric, pair or correlation
--                                                    deltas, store/window_deltas.py)
--   join  = {...} or absent                          repeated ids of a model without
--                                                    labels, see below
--   now   = "<unix time>"
--   fold_at = n: a pushed list this long is named in the reply, for the worker to fold
--   revision = "<the revision the deltas were computed with>"
--   journal = {heads = position, shards = {{shard, head expected, list position,
--              ARGV index of its blob or 0, the blob's token}, ...}} or absent
--                                                    the join's journals (store/records.py):
--                                                    every shard whose records the worker
--                                                    met must still be at the head it
--                                                    replayed to; a shard the batch changes
--                                                    gets the blob ARGV[index] pushed and
--                                                    its token as its head
-- ARGV[2..] the windows' deltas, then the journals' blobs (opaque here: never decoded)
-- Returns
--   {1, repeated ids, µs, {list, ...}}  applied; repeated ids of a model without labels;
--                                    µs: the script's own run time (Redis's clock), by
--                                    which the worker sizes its batches
--                                    (Settings.max_apply_ms); the deltas lists now
--                                    fold_at long or longer
--   {0, field, current offset}       a fence moved (another worker): nothing written
--   {3, reason}                      invalid input: nothing written
--   {4, revision or ""}              the model is not at that revision (registered again,
--                                    or its state is gone): nothing written
--   {5, "shard,shard,..."}          those shards' journals are not at the heads the worker
--                                    replayed to (another worker appended, one was
--                                    compacted, Redis lost writes): nothing written

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
  elseif kind == 'capincr' or kind == 'capincrf' then
    -- a perf hash's confusion-matrix cells and segment fields: past the hash's cap,
    -- counted in cm_other / s:__other__:<stat> (see below)
    if not is_int(d[1]) or not fields_ok(d, 2) then return invalid(kind) end
    for j = 2, #d, 2 do
      local _, inner = string.match(d[j], '^(%[[^%]]*%])(.*)$')
      inner = inner or d[j]
      if not (string.sub(inner, 1, 3) == 'cm:' or
              (string.sub(inner, 1, 2) == 's:' and string.match(inner, ':[^:]*$'))) then
        return invalid(kind .. ' field ' .. d[j])
      end
      if (kind == 'capincr' and not is_int(d[j + 1]))
          or (kind == 'capincrf' and not is_num(d[j + 1])) then
        return invalid('value of ' .. d[j])
      end
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
  elseif kind == 'zmax' or kind == 'zset' then
    if #d == 0 or #d % 2 ~= 0 then return invalid(kind) end
    for j = 1, #d, 2 do
      if type(d[j]) ~= 'string' or not is_num(d[j + 1]) then return invalid(kind) end
    end
    local t = redis.call('TYPE', KEYS[key])['ok']
    if t ~= 'none' and t ~= 'zset' then return invalid(kind .. ': the key holds no sorted set') end
  elseif kind == 'push' then
    -- a blob of ARGV for a list (a key of another type would fail half-way: checked)
    if #d ~= 1 or not is_int(d[1]) or d[1] < 2 or d[1] > #ARGV then
      return invalid(kind)
    end
    local t = redis.call('TYPE', KEYS[key])['ok']
    if t ~= 'none' and t ~= 'list' then return invalid(kind .. ': the key holds no list') end
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

-- 3. the join's journals: each shard met must still be at the head the worker replayed
-- to, or the worker reads what it lacks and works the share out again (streamdrift.pairing
-- computes what the pairs add; those sums are ops above).
local JR = p.journal
if JR ~= nil then
  if type(JR) ~= 'table' or not is_key(JR.heads) or type(JR.shards) ~= 'table' then
    return invalid('journal')
  end
  local names, moved = {}, {}
  for _, s in ipairs(JR.shards) do
    if type(s[1]) ~= 'string' or type(s[2]) ~= 'string' or not is_key(s[3])
        or not is_int(s[4]) or s[4] < 0 or s[4] == 1 or s[4] > #ARGV
        or type(s[5]) ~= 'string' then
      return invalid('journal shard ' .. tostring(s[1]))
    end
    names[#names + 1] = s[1]
  end
  for c = 1, #names, 512 do
    local last = math.min(c + 511, #names)
    local got = redis.call('HMGET', KEYS[JR.heads], unpack(names, c, last))
    for j = c, last do
      if (got[j - c + 1] or '') ~= JR.shards[j][2] then moved[#moved + 1] = names[j] end
    end
  end
  if #moved > 0 then return {5, table.concat(moved, ',')} end
end

-- 3b. repeated ids of a model without labels: each window's ids in a set. Checked here,
-- counted among the writes: SADD says how many ids were new, so an id already in the set,
-- or twice in this batch, is a repeat; SMISMEMBER runs only while the window still wants
-- an example of one (a set's lookups cost a third of its inserts).
local J = p.join
local dup_pred = 0
local dups, dup_example, W = {}, {}, {}
if J then
  for _, k in ipairs({J.dirty, J.windows, J.stats}) do
    if not is_key(k) then return invalid('join key') end
  end
  if not (is_int(J.width) and J.width > 0 and is_int(J.keep) and type(J.rev) == 'string'
          and is_num(p.now) and type(J.wkeys) == 'table' and type(J.dedupe) == 'table') then
    return invalid('join settings')
  end
  for _, w in ipairs(J.wkeys) do
    if not (is_int(w[1]) and is_key(w[2]) and is_int(w[3])) then
      return invalid('window keys')
    end
    W[w[1]] = {meta = w[2], expire = w[3]}
  end
  for _, g in ipairs(J.dedupe) do
    local k, ws, ids = g[1], g[2], g[3]
    if not is_key(k) or not is_int(ws) or not W[ws] or type(ids) ~= 'table' then
      return invalid('dedupe')
    end
    for j = 1, #ids do
      if type(ids[j]) ~= 'string' then return invalid('dedupe') end
    end
    -- a key of another type fails here (WRONGTYPE), before anything is written
    redis.call('SCARD', KEYS[k])
  end
end

-- 4. writes: nothing below can fail ------------------------------------------------------
local expiry = {}
local fold_at = tonumber(p.fold_at) or 0
local to_fold = {}
for _, op in ipairs(p.ops) do
  local key, kind, d = KEYS[op[1]], op[2], op[3]
  if kind == 'incr' then
    for j = 1, #d, 2 do redis.call('HINCRBY', key, d[j], d[j + 1]) end
  elseif kind == 'incrf' then
    for j = 1, #d, 2 do redis.call('HINCRBYFLOAT', key, d[j], d[j + 1]) end
  elseif kind == 'min' or kind == 'max' then
    -- the stored values of a few hundred fields at a time, one HMGET
    for c = 1, #d, 512 do
      local last = math.min(c + 511, #d)
      local names = {}
      for j = c, last, 2 do names[#names + 1] = d[j] end
      local got = redis.call('HMGET', key, unpack(names))
      local known = {}
      for j = 1, #names do known[names[j]] = got[j] end
      for j = c, last, 2 do
        local stored, v = known[d[j]], tonumber(d[j + 1])
        if (not stored) or (kind == 'min' and v < tonumber(stored))
            or (kind == 'max' and v > tonumber(stored)) then
          redis.call('HSET', key, d[j], d[j + 1])
          known[d[j]] = d[j + 1]
        end
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
  elseif kind == 'capincr' or kind == 'capincrf' then
    -- Fields that labels and segments name stop growing a perf hash past its cap: later
    -- confusion-matrix cells count in cm_other, later segment values in s:__other__. A
    -- stream of garbage labels or a high-cardinality segment cannot bloat it. The
    -- segment part is "<key>=<value>", so no segment is ever spelled "__other__".
    local cap = d[1]
    local cmd = (kind == 'capincr') and 'HINCRBY' or 'HINCRBYFLOAT'
    for j = 2, #d, 2 do
      local f = d[j]
      if redis.call('HEXISTS', key, f) == 0 and redis.call('HLEN', key) >= cap then
        local pre, inner = string.match(f, '^(%[[^%]]*%])(.*)$')
        if not pre then pre, inner = '', f end
        if string.sub(inner, 1, 3) == 'cm:' then
          f = pre .. 'cm_other'
        else
          f = 's:__other__' .. string.match(inner, '(:[^:]*)$')
        end
      end
      redis.call(cmd, key, f, d[j + 1])
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
  elseif kind == 'zmax' or kind == 'zset' then
    local args = {}
    for j = 1, #d, 2 do
      args[#args + 1] = d[j + 1]
      args[#args + 1] = d[j]
    end
    if kind == 'zmax' then
      redis.call('ZADD', key, 'GT', unpack(args))
    else
      redis.call('ZADD', key, unpack(args))
    end
  elseif kind == 'push' then
    local len = redis.call('RPUSH', key, ARGV[d[1]])
    if fold_at > 0 and len >= fold_at then to_fold[#to_fold + 1] = key end
  elseif kind == 'pfadd' then
    for c = 1, #d, 1000 do redis.call('PFADD', key, unpack(d, c, math.min(c + 999, #d))) end
  end
  -- a key's ops share their expiry: one EXPIREAT per key, not per op
  if op[4] and op[4] > 0 and expiry[key] ~= op[4] then
    redis.call('EXPIREAT', key, op[4])
    expiry[key] = op[4]
  end
end

if JR ~= nil then
  local heads = {}
  for _, s in ipairs(JR.shards) do
    if s[4] > 0 then
      redis.call('RPUSH', KEYS[s[3]], ARGV[s[4]])
      heads[#heads + 1] = s[1]
      heads[#heads + 1] = s[5]
    end
  end
  if #heads > 0 then redis.call('HSET', KEYS[JR.heads], unpack(heads)) end
end
if J then
  for _, g in ipairs(J.dedupe) do
    local k, ws, ids = KEYS[g[1]], g[2], g[3]
    local want = redis.call('HEXISTS', KEYS[W[ws].meta], 'duplicate_example') == 0
    local added, example = 0, nil
    for c = 1, #ids, 1000 do
      local last = math.min(c + 999, #ids)
      if want and not example then
        local known = redis.call('SMISMEMBER', k, unpack(ids, c, last))
        for j = 1, #known do
          if known[j] == 1 then example = ids[c + j - 1]; break end
        end
      end
      added = added + redis.call('SADD', k, unpack(ids, c, last))
    end
    redis.call('EXPIREAT', k, ws + J.width + J.keep)
    local n = #ids - added
    if n > 0 then
      dup_pred = dup_pred + n
      dups[ws] = (dups[ws] or 0) + n
      if want and not example then  -- only repeats within a chunk: the first of them
        local seen = {}
        for j = 1, #ids do
          if seen[ids[j]] then example = ids[j]; break end
          seen[ids[j]] = true
        end
      end
      -- an id carries its version after \31 (see join.ids_by_window)
      if example then dup_example[ws] = string.match(example, '^([^\31]*)') end
    end
  end
  for ws, n in pairs(dups) do
    local w = W[ws]
    redis.call('HINCRBY', KEYS[w.meta], 'duplicates', n)
    if dup_example[ws] then
      redis.call('HSETNX', KEYS[w.meta], 'duplicate_example', dup_example[ws])
    end
    redis.call('EXPIREAT', KEYS[w.meta], w.expire)
    redis.call('ZADD', KEYS[J.dirty], p.now, J.rev .. ':' .. string.format('%d', ws))
    redis.call('ZADD', KEYS[J.windows], ws, string.format('%d', ws))
  end
  if dup_pred > 0 then redis.call('HINCRBY', KEYS[J.stats], 'duplicate_predictions', dup_pred) end
end

for _, f in ipairs(p.fence) do redis.call('HSET', offsets, f[1], f[3]) end
local ended = redis.call('TIME')
local took = (tonumber(ended[1]) - tonumber(started[1])) * 1000000
  + tonumber(ended[2]) - tonumber(started[2])
return {1, dup_pred, took, to_fold}
