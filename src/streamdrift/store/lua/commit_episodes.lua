#!lua
-- Commit one evaluation: claim the alerts it raised and save the episodes it changed,
-- together, and only while the evaluator still holds the model's lease. Apart, a crash
-- between the two would leave an episode opened with no alert (never raised) or an
-- alert with its episode still closed (raised again by the next evaluation); an
-- evaluator whose lease expired mid-way must not overwrite the next one's episodes.
-- KEYS[1] lease, KEYS[2] alerts hash, KEYS[3] alert_state hash, KEYS[4] episodes hash.
-- ARGV: owner, claim state, number of alerts n, n x (alert_id, alert JSON),
--       number of episode fields m, m x (field, JSON), then fields to delete.
-- Returns -1 when the lease is not ours (nothing written), else the ids newly claimed.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local n = tonumber(ARGV[3])
local fresh = {}
for i = 0, n - 1 do
  local id, doc = ARGV[4 + 2 * i], ARGV[5 + 2 * i]
  if redis.call('HSETNX', KEYS[2], id, doc) == 1 then
    redis.call('HSET', KEYS[3], id, ARGV[2])
    fresh[#fresh + 1] = id
  end
end
local at = 4 + 2 * n
local m = tonumber(ARGV[at])
for i = 0, m - 1 do
  redis.call('HSET', KEYS[4], ARGV[at + 1 + 2 * i], ARGV[at + 2 + 2 * i])
end
for i = at + 1 + 2 * m, #ARGV do
  redis.call('HDEL', KEYS[4], ARGV[i])
end
return fresh
