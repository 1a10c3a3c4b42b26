-- A device joins a session (AUTH): creates it empty (version 0, a new epoch) for ARGV[1] unless it
-- exists; when the user may join it (owner or admin), refreshes its expiry when due and, for the
-- owner, makes it their most recent. Anyone else learns the owner (to be refused) and nothing more.
-- KEYS: 1-5 the session's keys (lib.lua); 6 the user's session index, with rule 'Q'.
-- ARGV: 1 user, 2 now, 3 epoch seed (lib.lua hf_new_epoch), 4 creation rule (as mutate.lua's: '-' create | 'R' answer
--       needs_reservation: the caller reserves quota in the owner's index first | 'Q' check the
--       quota in KEYS[6] and take the place here: one Redis, where that index is reachable from
--       this script, so a device creating a session costs one call instead of three), 5 deviceId,
--       6 '1' when the user is an admin, 7 the quota (rule 'Q')
-- Returns {'ok', owner, version, epoch, created(0/1), lastMutationId, refreshedExpiry(0: none)}
--   | {'needs_reservation'} | {'quota_exceeded'}
local now = tonumber(ARGV[2])
local m = redis.call('HMGET', KEYS[1], 'h', 'm:' .. ARGV[5])
if m[1] then
  local h = cmsgpack.unpack(m[1])
  if h[H_UID] ~= ARGV[1] and ARGV[6] ~= '1' then return {'ok', h[H_UID], h[H_V], h[H_EPOCH], 0, 0, 0} end
  local exp = hf_due(h[H_EXP], now)
  local touched = false
  if h[H_UID] == ARGV[1] then
    h[H_RECENT] = now
    touched = true
  end
  if exp then
    h[H_EXP] = exp
    touched = true
  end
  if touched then redis.call('HSET', KEYS[1], 'h', cmsgpack.pack(h)) end
  if exp then hf_refresh(KEYS, exp) end
  return {'ok', h[H_UID], h[H_V], h[H_EPOCH], 0, tonumber(m[2]) or 0, exp or 0}
end
if ARGV[4] == 'R' then return {'needs_reservation'} end
local exp = now + TTL + math.floor(TTL / 8)
if ARGV[4] == 'Q' and hf_reserve(KEYS[6], string.match(KEYS[1], '{([^}]*)}'), now, tonumber(ARGV[7]), exp) == 0 then
  return {'quota_exceeded'}
end
local epoch = hf_new_epoch(ARGV[3], now)
hf_new_session(KEYS)
redis.call('HSET', KEYS[1], 'h', cmsgpack.pack({ARGV[1], 0, epoch, now, now, now, 0, '', '', exp, 0, 0, 0, 0, 0}))
redis.call('PEXPIREAT', KEYS[1], exp)
return {'ok', ARGV[1], 0, epoch, 1, 0, exp}
