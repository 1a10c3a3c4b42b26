-- A device joins a session (AUTH): creates it empty (version 0, a new epoch) for ARGV[2] unless it
-- exists, within the user's quota; refreshes its expiry when due; makes it the owner's most recent.
-- KEYS: 1-7 the session's keys (lib.lua), [8 user index, 9 global index: single Redis only]
-- ARGV: 1 sessionId, 2 user, 3 now, 4 ttl(ms), 5 epoch for a new session,
--       6 creation rule ('' | 'R' | n, as in mutate.lua), 7 deviceId
-- Returns {'ok', owner, version, epoch, created(0/1), lastMutationId, refreshedExpiry(0: none)}
--   | {'quota_exceeded'} | {'needs_reservation'}
local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local m = redis.call('HMGET', KEYS[1], 'uid', 'v', 'epoch', 'exp', 'm:' .. ARGV[7])
if m[1] then
  local exp = hf_due(tonumber(m[4]) or 0, now, ttl)
  local mset = {}
  if m[1] == ARGV[2] then
    mset[#mset + 1] = 'recent'
    mset[#mset + 1] = now
  end
  if exp then
    mset[#mset + 1] = 'exp'
    mset[#mset + 1] = exp
  end
  if #mset > 0 then redis.call('HSET', KEYS[1], unpack(mset)) end
  if exp then hf_refresh(exp) end
  return {'ok', m[1], tonumber(m[2]) or 0, m[3] or '', 0, tonumber(m[5]) or 0, exp or 0}
end
local rule = ARGV[6]
if rule == 'R' then return {'needs_reservation'} end
if rule ~= '' then
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
  if redis.call('ZCARD', KEYS[8]) >= tonumber(rule) then return {'quota_exceeded'} end
end
local exp = now + ttl + math.floor(ttl / 8)
redis.call('HSET', KEYS[1], 'uid', ARGV[2], 'v', 0, 'epoch', ARGV[5], 'created', now, 'updated', now,
  'recent', now, 'bytes', 0, 'exp', exp)
redis.call('PEXPIREAT', KEYS[1], exp)
if KEYS[8] then
  redis.call('ZADD', KEYS[8], exp, ARGV[1])
  redis.call('PEXPIREAT', KEYS[8], exp)
  redis.call('ZADD', KEYS[9], exp, ARGV[1])
end
return {'ok', ARGV[2], 0, ARGV[5], 1, 0, exp}
