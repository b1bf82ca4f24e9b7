#!lua
-- Extend the evaluation lease only if it is still ours. KEYS[1] the lease, ARGV[1] its
-- owner, ARGV[2] the new lease in ms. Returns 1 if extended, 0 if not ours (any more).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
