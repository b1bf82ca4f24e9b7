#!lua flags=no-writes
-- The join's journals (store/records.py): each shard's head and its blobs from a given
-- index on, read together so that the blobs end exactly at the head.
-- KEYS[1]: the model's journal heads (a hash: shard -> token of its last blob);
-- KEYS[i + 1]: shard i's journal (a list of blobs).
-- ARGV[1]: JSON [[shard, first blob wanted], ...], in KEYS order.
-- Returns head, blobs, head, blobs, ... ("" for a shard with no journal).
local a = cjson.decode(ARGV[1])
local out = {}
for i, s in ipairs(a) do
  out[#out + 1] = redis.call('HGET', KEYS[1], s[1]) or ''
  out[#out + 1] = redis.call('LRANGE', KEYS[i + 1], s[2], -1)
end
return out
