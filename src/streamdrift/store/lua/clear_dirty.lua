#!lua
-- Remove dirty marks only if no apply touched the window since the evaluator read it.
-- KEYS[1] the dirty zset. ARGV: member, score read, member, score read, ...
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i])) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 1
