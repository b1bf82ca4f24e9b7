#!lua
-- Record an alert and its claim together: a crash between two separate writes would
-- leave a claim without the alert (never raised, never re-sent).
-- KEYS[1] alerts hash, KEYS[2] alert_state hash. ARGV: alert_id, alert JSON, state.
-- Returns 1 when the alert is new, 0 when it was raised before.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
