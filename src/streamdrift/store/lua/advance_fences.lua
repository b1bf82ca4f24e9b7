#!lua
-- Move a model's fences forward where it had no events: the worker applied every event
-- of these partitions up to the new offsets, and none of them was this model's. Only
-- where the fence is still what the worker last saw: a fence that moved was moved by
-- another worker, and one that went back is state Redis lost (the worker re-reads it).
-- KEYS[1] the model's offsets hash. ARGV: field, expected ("-1": none), new, ...
-- Returns the fields left alone, each with its current value.
local out = {}
for i = 1, #ARGV, 3 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i]) or '-1'
  if tonumber(cur) == tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  else
    out[#out + 1] = ARGV[i]
    out[#out + 1] = cur
  end
end
return out
