-- Atomic read of a session: meta and state from the same instant.
-- KEYS: 1 meta, 2 state. Returns false or {{uid, v, epoch, created, updated, dev, app, exp}, stateRecordsFlat}.
local meta = redis.call('HMGET', KEYS[1], 'uid', 'v', 'epoch', 'created', 'updated', 'dev', 'app', 'exp')
if not meta[1] then return false end
return {meta, redis.call('HGETALL', KEYS[2])}
