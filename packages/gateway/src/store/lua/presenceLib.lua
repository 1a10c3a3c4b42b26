-- The device registry of one session (presence/redis.ts): a hash device_id → JSON record (see
-- presence/types.ts), with open connections counted per node incarnation (`nodes`), so a restarted
-- node never inherits the counts of its previous process. Functions shared by presence.lua (every
-- registry op), touch.lua (`last_seen` of many sessions) and join.lua (a claim and a count in one call). Loaded with or without lib.lua's
-- prelude, so nothing here relies on it.

local function hf_total(r)
  local n = 0
  for _, c in pairs(r.nodes) do n = n + c end
  return n
end

local function hf_device_load(key, id)
  local raw = redis.call('HGET', key, id)
  if not raw then return nil end
  local r = cjson.decode(raw)
  if type(r.nodes) ~= 'table' then r.nodes = {} end
  return r
end

local function hf_device_save(key, id, r)
  -- cjson encodes an empty table as {} (an object), which is what the record wants.
  redis.call('HSET', key, id, cjson.encode(r))
end

-- The registry lives and dies with its session: same expiry instant. Returns the session's header
-- (false when there is none). 10 is lib.lua's H_EXP, written out (see above; change both).
local function hf_devices_expire(key, meta, ttl)
  local h = redis.call('HGET', meta, 'h')
  if h then redis.call('PEXPIREAT', key, cmsgpack.unpack(h)[10]) else redis.call('PEXPIRE', key, ttl) end
  return h
end

local function hf_device_fresh(id, now)
  return {device_id = id, nodes = {}, connected_at = now, last_seen = now}
end

-- Counts a connection of device `id` on instance `inst` (descriptor: the fields the device sent, as
-- JSON). Returns {1 if the device was offline (first connection) else 0, every record flat (id,
-- JSON, …)}: the caller needs the device list anyway. With `stateKey`, also the session as of now,
-- {…, header, state records flat} when it exists (read.lua's read: what the joining socket's
-- snapshot shows).
local function hf_device_connect(key, meta, stateKey, now, ttl, inst, id, descriptor)
  local d = cjson.decode(descriptor)
  local r = hf_device_load(key, id) or hf_device_fresh(id, now)
  local wasOnline = hf_total(r) > 0
  if not wasOnline then r.connected_at = now end
  for _, f in ipairs({'device_type', 'device_name', 'os_version', 'app_version'}) do
    if d[f] then r[f] = d[f] end
  end
  r.nodes[inst] = (r.nodes[inst] or 0) + 1
  r.last_seen = now
  hf_device_save(key, id, r)
  local h = hf_devices_expire(key, meta, ttl)
  local out = {wasOnline and 0 or 1, redis.call('HGETALL', key)}
  if stateKey and h then
    out[3] = h
    out[4] = redis.call('HGETALL', stateKey)
  end
  return out
end
