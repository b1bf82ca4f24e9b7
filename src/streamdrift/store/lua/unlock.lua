#!lua
-- Release the evaluation lease only if it is still ours (it may have expired and been
-- taken by another worker meanwhile). KEYS[1] the lease, ARGV[1] its owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
