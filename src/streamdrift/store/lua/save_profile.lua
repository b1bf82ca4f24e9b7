#!lua
-- Store a profile under the next revision, if the revision is still the one the caller
-- read: profile and revision change together, so a worker never sees a revision whose
-- profile is not there yet. KEYS[1] revision, KEYS[2] profile, KEYS[3] offsets.
-- ARGV: expected current revision ("0": none), new revision, profile JSON, then fence
-- fields of a model whose state was lost: each gets the fence -1 (nothing applied)
-- where it has none, so workers read those partitions again from the start.
-- Returns 1 when stored, 0 when another register got there first (read again).
local cur = redis.call('GET', KEYS[1]) or '0'
if cur ~= ARGV[1] then return 0 end
for i = 4, #ARGV do redis.call('HSETNX', KEYS[3], ARGV[i], '-1') end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
return 1
