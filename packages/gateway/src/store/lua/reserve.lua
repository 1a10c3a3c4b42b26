-- Reserves room for a new session in its owner's index (on Redis Cluster another slot than the
-- session's, so one script cannot check the quota and create it; on one Redis the same two steps
-- keep creation off the write path). The session is then created by claim.lua or mutate.lua.
-- KEYS: 1 user index. ARGV: 1 sessionId, 2 now, 3 max, 4 reservation deadline (ms).
-- Returns 2 reserved now, 1 already listed, 0 quota exceeded.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) - tonumber(ARGV[2]) then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) end
return 2
