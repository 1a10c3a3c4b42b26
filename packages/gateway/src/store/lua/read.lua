-- Atomic read of a session: meta and state from the same instant, plus the remaining TTL.
-- KEYS: 1 meta, 2 state.  Returns false or {metaFlat, stateFlat, pttl}.
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return false end
return {meta, redis.call('HGETALL', KEYS[2]), redis.call('PTTL', KEYS[1])}
