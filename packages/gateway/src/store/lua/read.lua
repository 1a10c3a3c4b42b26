-- Atomic read of a session: its header and state from the same instant.
-- KEYS: 1 meta, 2 state. Returns false or {header (cmsgpack, see lib.lua), stateRecordsFlat}.
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return false end
return {h, redis.call('HGETALL', KEYS[2])}
