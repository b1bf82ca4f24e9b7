#!lua
-- Store a profile under the next revision, if the revision is still the one the caller
-- read: profile and revision change together, so a worker never sees a revision whose
-- profile is not there yet. KEYS[1] revision, KEYS[2] profile.
-- ARGV: expected current revision ("0": none), new revision, profile JSON.
-- Returns 1 when stored, 0 when another register got there first (read again).
local cur = redis.call('GET', KEYS[1]) or '0'
if cur ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[2])
return 1
