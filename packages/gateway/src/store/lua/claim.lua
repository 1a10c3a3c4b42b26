-- Creates an empty session (version 0) owned by ARGV[2] unless one exists.
-- KEYS: 1 meta, [2 user index, 3 global index]. ARGV: 1 sessionId, 2 user, 3 now, 4 ttl(ms).
-- Returns {owner, version, created}.
local m = redis.call('HMGET', KEYS[1], 'uid', 'v')
local now = tonumber(ARGV[3])
if m[1] then
  if m[1] == ARGV[2] and KEYS[2] then redis.call('ZADD', KEYS[2], now, ARGV[1]) end
  return {m[1], tonumber(m[2]) or 0, 0}
end
redis.call('HSET', KEYS[1], 'uid', ARGV[2], 'v', 0, 'created', now, 'updated', now, 'bytes', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if KEYS[2] then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  redis.call('ZADD', KEYS[3], now, ARGV[1])
end
return {ARGV[2], 0, 1}
