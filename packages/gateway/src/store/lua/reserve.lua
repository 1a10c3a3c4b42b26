-- Redis Cluster only: reserves room for a new session in its owner's index (another slot than the
-- session), since one script cannot check the quota and create the session there.
-- KEYS: 1 user index. ARGV: 1 sessionId, 2 now, 3 max, 4 reservation deadline (ms).
-- Returns 2 reserved now, 1 already listed, 0 quota exceeded.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) - tonumber(ARGV[2]) then redis.call('PEXPIREAT', KEYS[1], ARGV[4]) end
return 2
