#!lua
-- Move a model's fences forward where it had no events: the worker applied every event
-- of these partitions up to the new offsets, and none of them was this model's. Only
-- where the fence is still what the worker last saw: a fence that moved was moved by
-- another worker, and one that went back is state Redis lost (the worker re-reads it).
-- Nothing at all for a model without a revision: its state is gone, and fences written
-- now would hide what it lost.
-- KEYS[1] the model's offsets hash, KEYS[2] its revision.
-- ARGV: field, expected ("-1": none), new, ...
-- Returns the fields left alone, each with its current value; 0 when the model is gone.
if not redis.call('GET', KEYS[2]) then return 0 end
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
