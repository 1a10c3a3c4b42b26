-- Single-use handoff token. KEYS: 1 token hash, 2 the session's live-token index. ARGV: 1 token.
-- Returns 'not_found' | 'used' | the record's fields.
if redis.call('EXISTS', KEYS[1]) == 0 then return 'not_found' end
if redis.call('HSETNX', KEYS[1], 'used', '1') == 0 then return 'used' end
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HGETALL', KEYS[1])
