-- The header (see lib.lua) of each session whose meta hash is a key, false where there is none:
-- one call for many sessions on one Redis (the version check of quiet sessions, listings).
-- KEYS: meta hashes. Returns the headers in the order of KEYS.
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HGET', KEYS[i], 'h') end
return out
