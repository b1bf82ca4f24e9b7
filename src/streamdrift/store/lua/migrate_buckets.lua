#!lua
-- Move the join's records of the earlier layout (one hash field per id, in buckets) into
-- the journals, once, all or nothing: only while the model has no journal, and only if
-- the buckets hold as many ids as the caller read (no writer changed them meanwhile).
-- KEYS[1]: the journal heads; KEYS[2 .. n + 1]: the n shards' journals; the rest: the
-- buckets read. ARGV: n, the ids read, then shard, token for each shard, then each
-- shard's blob (in KEYS order).
-- Returns 1 (moved, buckets deleted) or 0 (nothing done: read again, or already moved).
local n, ids = tonumber(ARGV[1]), tonumber(ARGV[2])
if redis.call('HLEN', KEYS[1]) > 0 then return 0 end
local held = 0
for i = n + 2, #KEYS do held = held + redis.call('HLEN', KEYS[i]) end
if held ~= ids then return 0 end
local heads = {}
for i = 1, n do
  redis.call('RPUSH', KEYS[i + 1], ARGV[2 + 2 * n + i])
  heads[#heads + 1] = ARGV[1 + 2 * i]
  heads[#heads + 1] = ARGV[2 + 2 * i]
end
if n > 0 then redis.call('HSET', KEYS[1], unpack(heads)) end
for i = n + 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
