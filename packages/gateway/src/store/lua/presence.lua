-- Device registry of one session: a hash device_id → JSON record (see presence/types.ts), with
-- open connections counted per node incarnation (`nodes`), so a restarted node never inherits the
-- counts of its previous process.
-- KEYS: 1 devices hash, 2 the session's meta (for its expiry). ARGV: 1 op, 2 now, 3 ttl(ms), then per op:
--   connect: instance, deviceId, descriptor JSON → {1 if the device was offline (first connection)
--            else 0, every record flat (id, JSON, …)}: the caller needs the device list anyway.
--            With KEYS[3], the session's state hash: also the session as of now, {…, header, state
--            records flat} when it exists (read.lua's read: what the joining socket's snapshot shows)
--   disconnect: instance, deviceId → 1 if that was its last connection anywhere
--   set: instance, deviceId, count → 1 came online, -1 went offline, 0 no change (reconciliation)
--   reap: instance → list of device ids that went offline
-- (touch, the `last_seen` refresh, is touch.lua: several sessions a call.)
local key, op, now, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]

local function total(r)
  local n = 0
  for _, c in pairs(r.nodes) do n = n + c end
  return n
end

local function load(id)
  local raw = redis.call('HGET', key, id)
  if not raw then return nil end
  local r = cjson.decode(raw)
  if type(r.nodes) ~= 'table' then r.nodes = {} end
  return r
end

local function save(id, r)
  -- cjson encodes an empty table as {} (an object), which is what the record wants.
  redis.call('HSET', key, id, cjson.encode(r))
end

-- The registry lives and dies with its session: same expiry instant. This script is loaded without
-- the lib.lua prelude, so the header index is written out: 10 is lib.lua's H_EXP (change both).
local function expire()
  local h = redis.call('HGET', KEYS[2], 'h')
  if h then redis.call('PEXPIREAT', key, cmsgpack.unpack(h)[10]) else redis.call('PEXPIRE', key, ttl) end
  return h
end

local function fresh(id)
  return {device_id = id, nodes = {}, connected_at = now, last_seen = now}
end

if op == 'connect' then
  local inst, id = ARGV[4], ARGV[5]
  local d = cjson.decode(ARGV[6])
  local r = load(id) or fresh(id)
  local wasOnline = total(r) > 0
  if not wasOnline then r.connected_at = now end
  for _, f in ipairs({'device_type', 'device_name', 'os_version', 'app_version'}) do
    if d[f] then r[f] = d[f] end
  end
  r.nodes[inst] = (r.nodes[inst] or 0) + 1
  r.last_seen = now
  save(id, r)
  local h = expire()
  local out = {wasOnline and 0 or 1, redis.call('HGETALL', key)}
  if KEYS[3] and h then
    out[3] = h
    out[4] = redis.call('HGETALL', KEYS[3])
  end
  return out
elseif op == 'disconnect' then
  local inst, id = ARGV[4], ARGV[5]
  local r = load(id)
  if not r then return 0 end
  local before = total(r)
  if r.nodes[inst] then
    r.nodes[inst] = r.nodes[inst] - 1
    if r.nodes[inst] <= 0 then r.nodes[inst] = nil end
  end
  r.last_seen = now
  save(id, r)
  return (before > 0 and total(r) == 0) and 1 or 0
elseif op == 'set' then
  local inst, id, n = ARGV[4], ARGV[5], tonumber(ARGV[6])
  local r = load(id)
  if not r then
    if n == 0 then return 0 end
    r = fresh(id)
  end
  local before = total(r)
  r.nodes[inst] = n > 0 and n or nil
  local after = total(r)
  if before == 0 and after > 0 then r.connected_at = now end
  if after > 0 then r.last_seen = now end
  save(id, r)
  expire()
  if before == 0 and after > 0 then return 1 end
  if before > 0 and after == 0 then return -1 end
  return 0
elseif op == 'reap' then
  local inst = ARGV[4]
  local gone = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local r = cjson.decode(all[i + 1])
    if type(r.nodes) == 'table' and r.nodes[inst] then
      r.nodes[inst] = nil
      if total(r) == 0 then gone[#gone + 1] = all[i] end
      save(all[i], r)
    end
  end
  return gone
end
return redis.error_reply('unknown presence op ' .. tostring(op))
