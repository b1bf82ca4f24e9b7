#!lua
-- Record a topic's incarnation, only if it is still the one the caller saw: of several
-- workers noticing that a topic was created again, one records it (and alerts).
-- KEYS[1] the topics hash. ARGV: topic, expected ("" for none), new.
-- Returns 1 when recorded, 0 when another worker recorded something else first.
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
