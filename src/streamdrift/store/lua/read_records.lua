#!lua flags=no-writes
-- The join's records of a batch's ids, read before the worker works out what the batch
-- does to them (streamdrift.pairing); the apply checks each is still what was read.
-- KEYS: the model's id buckets; ARGV[1]: JSON [bucket's position in KEYS, prediction id,
-- ...] (one argument: far cheaper to send and to read than two per id).
-- Returns each id's record, or false for none.
local a = cjson.decode(ARGV[1])
local out = {}
for i = 1, #a, 2 do
  out[#out + 1] = redis.call('HGET', KEYS[a[i]], a[i + 1])
end
return out
