-- A device joins a session (AUTH): hf_claim creates it empty (version 0, a new epoch) for ARGV[1]
-- unless it exists; when the user may join it (owner or admin), refreshes its expiry when due
-- and, for the owner, makes it their most recent. Anyone else learns the owner (to be refused) and nothing more.
-- KEYS: 1-5 the session's keys (lib.lua); on one Redis also 6 the user's session index and 7 the
--       index of every session, which this script then keeps in step itself when the user owns
--       the session (one call per AUTH instead of a claim and a pipeline of five index commands).
-- ARGV: 1 user, 2 now, 3 epoch seed (lib.lua hf_new_epoch), 4 creation rule (as mutate.lua's: '-' create | 'R' answer
--       needs_reservation: the caller reserves quota in the owner's index first | 'Q' check the
--       quota in KEYS[6] and take the place here: one Redis, where that index is reachable from
--       this script, so a device creating a session costs one call instead of three), 5 deviceId,
--       6 '1' when the user is an admin, 7 the quota (rule 'Q')
-- Returns {'ok', owner, version, epoch, created(0/1), lastMutationId, refreshedExpiry(0: none, or
--   the indexes are already in step)} | {'needs_reservation'} | {'quota_exceeded'}
-- (A function: join.lua's Redis Function calls it, then counts the device when asked.)

-- The owner's and the global index list session `sid` until `exp` (what redis.ts index() does on
-- Redis Cluster, where they sit in other slots). True when done, so the caller skips its own.
-- `listed`: the owner's index has just taken the session at `exp` (hf_reserve under rule 'Q').
-- (At the top level: made once, when the library is loaded, not on every claim.)
local function hf_claim_index(KEYS, sid, now, exp, listed)
  if #KEYS < 7 then return false end
  if not listed then
    redis.call('ZADD', KEYS[6], exp, sid)
    redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
    if redis.call('PTTL', KEYS[6]) < exp - now then redis.call('PEXPIREAT', KEYS[6], exp) end
  end
  redis.call('ZADD', KEYS[7], exp, sid)
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
  return true
end

local function hf_claim(KEYS, ARGV)
  local now = tonumber(ARGV[2])
  local sid = hf_session_id(KEYS[1])
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
    if exp then
      hf_refresh(KEYS, exp)
      if h[H_UID] == ARGV[1] and hf_claim_index(KEYS, sid, now, exp) then exp = nil end
    end
    return {'ok', h[H_UID], h[H_V], h[H_EPOCH], 0, tonumber(m[2]) or 0, exp or 0}
  end
  if ARGV[4] == 'R' then return {'needs_reservation'} end
  local exp = now + TTL + math.floor(TTL / 8)
  local reserved = ARGV[4] == 'Q' and hf_reserve(KEYS[6], sid, now, tonumber(ARGV[7]), exp)
  if reserved == 0 then return {'quota_exceeded'} end
  local epoch = hf_new_epoch(ARGV[3], now)
  hf_new_session(KEYS)
  redis.call('HSET', KEYS[1], 'h', cmsgpack.pack({ARGV[1], 0, epoch, now, now, now, 0, '', '', exp, 0, 0, 0, 0, 0}))
  redis.call('PEXPIREAT', KEYS[1], exp)
  return {'ok', ARGV[1], 0, epoch, 1, 0, hf_claim_index(KEYS, sid, now, exp, reserved == 2) and 0 or exp}
end
