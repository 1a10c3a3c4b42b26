-- Keeps a session with connected devices alive: refreshes its expiry when due (lib.lua).
-- KEYS: 1-7 the session's keys. ARGV: 1 now, 2 ttl(ms).
-- Returns {owner, newExpiry} when refreshed, else false.
local m = redis.call('HMGET', KEYS[1], 'uid', 'exp')
if not m[1] then return false end
local exp = hf_due(tonumber(m[2]) or 0, tonumber(ARGV[1]), tonumber(ARGV[2]))
if not exp then return false end
redis.call('HSET', KEYS[1], 'exp', exp)
hf_refresh(exp)
return {m[1], exp}
