#!lua
-- Raise the per-partition progress floor (never lower it): the offset up to which every
-- event of a partition was applied. A model with no fence on the partition (none of its
-- events there applied yet) is read from after it, not from the partition's start. Only
-- while the state marker is the one the worker counted under: a Redis emptied meanwhile
-- gets no floor that would hide what it lost.
-- KEYS[1] the progress hash, KEYS[2] the state marker. ARGV[1]: the marker expected;
-- then field, offset, ... Returns 1, or 0 when the marker differs (nothing written).
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do
  local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > cur then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
