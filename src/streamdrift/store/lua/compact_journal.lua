#!lua
-- Rewrite one shard of the join's journal as a snapshot of its live records, or append
-- one blob outside an apply; either only if the shard's head is still the one the
-- caller replayed to (else another writer appended: nothing is done).
-- KEYS[1]: the model's journal heads; KEYS[2]: the shard's journal.
-- ARGV: shard, head expected ("" for none), the new blob's token, the blob,
-- and "append" to append instead of replacing the journal.
-- Returns 1 (done) or 0 (the head moved).
local head = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if head ~= ARGV[2] then return 0 end
if ARGV[5] ~= 'append' then redis.call('DEL', KEYS[2]) end
redis.call('RPUSH', KEYS[2], ARGV[4])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
