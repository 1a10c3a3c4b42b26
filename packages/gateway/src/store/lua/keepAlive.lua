-- Keeps a session with connected devices alive: refreshes its expiry when due (lib.lua).
-- KEYS: 1-5 the session's keys. ARGV: 1 now.
-- Returns {owner, newExpiry} when refreshed, else false.
local raw = redis.call('HGET', KEYS[1], 'h')
if not raw then return false end
local h = cmsgpack.unpack(raw)
local exp = hf_due(h[H_EXP], tonumber(ARGV[1]))
if not exp then return false end
h[H_EXP] = exp
redis.call('HSET', KEYS[1], 'h', cmsgpack.pack(h))
hf_refresh(KEYS, exp)
return {h[H_UID], exp}
