-- A device joins a session (WebSocket AUTH) in one call: claim.lua's claim and, when the user may
-- join (owner or admin) and a count is asked for, presenceLib.lua's count of the connection, with
-- the session's devices and, asked for, the session itself. Two scripts before (a claim, then a
-- count): each call costs the gateway a command, a reply and a write, and Redis a script run
-- (+5% gateway and +10% Redis CPU per connect, measured). Someone who may not join is told the
-- owner and counted nowhere. A Redis Function in the write path's library (store/redisLibrary.ts):
-- the helpers above it are made once, when the library is loaded, not on every call as a script's
-- would be. Before it: the constants, lib.lua, claim.lua, presenceLib.lua (in the library also the
-- write path's mutate.lua and mutateBatch.lua; as a script, on a Redis without Functions, not).
-- KEYS: claim.lua's (1-5 the session's keys, 5 being its devices hash; on one Redis 6-7 the indexes)
-- ARGV: 1-7 claim.lua's; to count the device also 8 instance, 9 its descriptor JSON, 10 '1': read
--       the session too
-- Returns claim.lua's reply; when the device was counted, followed by hf_device_connect's reply
-- (8 first, 9 records flat, and with ARGV[10] '1' 10 header, 11 state records flat).
local function hf_join(KEYS, ARGV)
  local c = hf_claim(KEYS, ARGV)
  if c[1] ~= 'ok' or not ARGV[8] or (c[2] ~= ARGV[1] and ARGV[6] ~= '1') then return c end
  local p = hf_device_connect(KEYS[5], KEYS[1], ARGV[10] == '1' and KEYS[2] or nil, tonumber(ARGV[2]), TTL, ARGV[8], ARGV[5], ARGV[9])
  for i = 1, #p do c[7 + i] = p[i] end
  return c
end
