#!lua
-- Raise the per-partition progress floor (never lower it): the offset up to which every
-- event of a partition was applied, for partitions no model has a fence on.
-- KEYS[1] the progress hash. ARGV: field, offset, ...
for i = 1, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
