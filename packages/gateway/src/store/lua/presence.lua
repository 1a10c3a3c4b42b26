-- Device registry of one session: a hash device_id → JSON record (see presence/types.ts).
-- KEYS: 1 devices hash. ARGV: 1 op, 2 now, 3 ttl(ms), then per op:
--   connect: nodeId, deviceId, descriptor JSON → 1 if the device was offline (first connection)
--   disconnect: nodeId, deviceId → 1 if that was its last connection anywhere
--   touch: deviceId* → 0
--   reap: nodeId → list of device ids that went offline
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
  redis.call('HSET', key, id, cjson.encode(r))
end

if op == 'connect' then
  local nodeId, id = ARGV[4], ARGV[5]
  local d = cjson.decode(ARGV[6])
  local r = load(id) or {device_id = id, nodes = {}, connected_at = now, last_seen = now}
  local wasOnline = total(r) > 0
  if not wasOnline then r.connected_at = now end
  for _, f in ipairs({'device_type', 'device_name', 'os_version', 'app_version'}) do
    if d[f] then r[f] = d[f] end
  end
  r.nodes[nodeId] = (r.nodes[nodeId] or 0) + 1
  r.last_seen = now
  save(id, r)
  redis.call('PEXPIRE', key, ttl)
  return wasOnline and 0 or 1
elseif op == 'disconnect' then
  local nodeId, id = ARGV[4], ARGV[5]
  local r = load(id)
  if not r then return 0 end
  local before = total(r)
  if r.nodes[nodeId] then
    r.nodes[nodeId] = r.nodes[nodeId] - 1
    if r.nodes[nodeId] <= 0 then r.nodes[nodeId] = nil end
  end
  r.last_seen = now
  save(id, r)
  return (before > 0 and total(r) == 0) and 1 or 0
elseif op == 'touch' then
  for i = 4, #ARGV do
    local r = load(ARGV[i])
    if r then
      r.last_seen = now
      save(ARGV[i], r)
    end
  end
  return 0
elseif op == 'reap' then
  local nodeId = ARGV[4]
  local gone = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local r = cjson.decode(all[i + 1])
    if type(r.nodes) == 'table' and r.nodes[nodeId] then
      r.nodes[nodeId] = nil
      if total(r) == 0 then gone[#gone + 1] = all[i] end
      save(all[i], r)
    end
  end
  return gone
end
return redis.error_reply('unknown presence op ' .. tostring(op))
