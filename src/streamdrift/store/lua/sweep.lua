#!lua
-- The join's janitor: drop the ids whose time (a prediction's, or a waiting label's) is
-- before the cut-off. Redis 7.0 has no per-field expiry, so the buckets are swept.
-- KEYS: the id buckets to sweep. ARGV[1]: the cut-off (unix seconds). Returns the
-- number of ids removed.
local cutoff, removed = tonumber(ARGV[1]), 0
for _, k in ipairs(KEYS) do
  local all, old = redis.call('HGETALL', k), {}
  for i = 1, #all, 2 do
    local ts = tonumber(string.match(all[i + 1], '^[JL]?(%d+)'))
    if ts and ts < cutoff then old[#old + 1] = all[i] end
  end
  for c = 1, #old, 1000 do redis.call('HDEL', k, unpack(old, c, math.min(c + 999, #old))) end
  removed = removed + #old
end
return removed
