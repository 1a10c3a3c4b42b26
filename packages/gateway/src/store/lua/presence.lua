-- Device registry ops of one session (presenceLib.lua, prepended, holds the record format and the
-- connect op, which join.lua shares).
-- KEYS: 1 devices hash, 2 the session's meta (for its expiry). ARGV: 1 op, 2 now, 3 ttl(ms), then per op:
--   connect: instance, deviceId, descriptor JSON → hf_device_connect's reply; with KEYS[3], the
--            session's state hash, the session too
--   disconnect: instance, deviceId → 1 if that was its last connection anywhere
--   set: instance, deviceId, count → 1 came online, -1 went offline, 0 no change (reconciliation)
--   reap: instance → list of device ids that went offline
-- (touch, the `last_seen` refresh, is touch.lua: several sessions a call.)
local key, op, now, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]

if op == 'connect' then
  return hf_device_connect(key, KEYS[2], KEYS[3], now, ttl, ARGV[4], ARGV[5], ARGV[6])
elseif op == 'disconnect' then
  local inst, id = ARGV[4], ARGV[5]
  local r = hf_device_load(key, id)
  if not r then return 0 end
  local before = hf_total(r)
  if r.nodes[inst] then
    r.nodes[inst] = r.nodes[inst] - 1
    if r.nodes[inst] <= 0 then r.nodes[inst] = nil end
  end
  r.last_seen = now
  hf_device_save(key, id, r)
  return (before > 0 and hf_total(r) == 0) and 1 or 0
elseif op == 'set' then
  local inst, id, n = ARGV[4], ARGV[5], tonumber(ARGV[6])
  local r = hf_device_load(key, id)
  if not r then
    if n == 0 then return 0 end
    r = hf_device_fresh(id, now)
  end
  local before = hf_total(r)
  r.nodes[inst] = n > 0 and n or nil
  local after = hf_total(r)
  if before == 0 and after > 0 then r.connected_at = now end
  if after > 0 then r.last_seen = now end
  hf_device_save(key, id, r)
  hf_devices_expire(key, KEYS[2], ttl)
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
      if hf_total(r) == 0 then gone[#gone + 1] = all[i] end
      hf_device_save(key, all[i], r)
    end
  end
  return gone
end
return redis.error_reply('unknown presence op ' .. tostring(op))
