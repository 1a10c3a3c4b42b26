-- Presence touch (PresenceRegistry.touch): refreshes `last_seen` of the named devices that have a
-- record (presenceLib.lua, prepended, reads and writes them), in the devices hashes of several sessions at once on one Redis
-- (one per call on Redis Cluster: other slots). A call per session made a touch round of a node
-- holding 5,000 sessions 5,000 commands at once, their objects alive together: the gateway's heap
-- grew by a third for it.
-- KEYS: devices hashes. ARGV: 1 now, then per key: the number of device ids, the device ids.
local now = tonumber(ARGV[1])
local a = 2
for i = 1, #KEYS do
  local key = KEYS[i]
  local n = tonumber(ARGV[a])
  for j = a + 1, a + n do
    local r = hf_device_load(key, ARGV[j])
    if r then
      r.last_seen = now
      hf_device_save(key, ARGV[j], r)
    end
  end
  a = a + n + 1
end
return 0
