#!lua
-- Replace the first n blobs of a window's deltas list by their sum (store/window_deltas.py),
-- only if the list still starts with the blobs the caller read: appends only go to the
-- end, so the first blob's token and the n-th's tell whether anything changed there (a
-- fold by another reader, Redis losing writes). The key is never emptied on the way, so
-- it keeps its expiry.
-- KEYS[1]: the deltas list. ARGV: n, the first blob's token, the n-th blob's token, the sum.
-- Returns 1 (folded) or 0 (the list changed: nothing done).
local n = tonumber(ARGV[1])
if not n or n < 2 then return 0 end
local first = redis.call('LINDEX', KEYS[1], 0)
local last = redis.call('LINDEX', KEYS[1], n - 1)
local len = string.len(ARGV[2])
if not first or not last or string.sub(first, 1, len) ~= ARGV[2]
    or string.sub(last, 1, len) ~= ARGV[3] then
  return 0
end
redis.call('LSET', KEYS[1], n - 1, ARGV[4])
redis.call('LTRIM', KEYS[1], n - 1, -1)
return 1
