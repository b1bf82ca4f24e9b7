#!lua flags=no-writes
-- The join's records of a batch's ids, read before the worker works out what the batch
-- does to them (streamdrift.pairing); the apply checks each is still what was read.
-- KEYS: the model's id buckets; ARGV: (bucket's position in KEYS, prediction id) pairs.
-- Returns each id's record, or false for none.
local out = {}
for i = 1, #ARGV, 2 do
  out[#out + 1] = redis.call('HGET', KEYS[tonumber(ARGV[i])], ARGV[i + 1])
end
return out
