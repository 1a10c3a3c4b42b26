-- Stores a handoff token unless the session holds ARGV[2] live ones already (0 = no limit).
-- KEYS: 1 the session's live-token index (sorted by expiry), 2 the token's hash.
-- ARGV: 1 now, 2 max, 3 token, 4 expiresAt(ms), 5.. field/value pairs of the record.
-- Returns 'ok' | 'quota_exceeded'.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local max = tonumber(ARGV[2])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return 'quota_exceeded' end
redis.call('HSET', KEYS[2], unpack(ARGV, 5))
redis.call('PEXPIREAT', KEYS[2], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
-- Every token lives as long; the newest expires last.
redis.call('PEXPIREAT', KEYS[1], ARGV[4])
return 'ok'
