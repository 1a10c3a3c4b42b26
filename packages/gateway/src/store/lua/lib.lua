-- Prelude shared by the session scripts (prepended when a script is loaded; see redis.ts, which
-- also prepends the per-deployment constants TTL, MAX_STATE, LOG_LEN, LOG_MAX, PUB and PREFIX_LEN). Only what
-- several scripts use lives here: keep-alive and catch-up run as scripts, whose top level (every
-- helper's closure) runs again on each call; what only the write path needs is in mutate.lua. (The
-- write path and the AUTH claim, join.lua, are Redis Functions: their top level runs at load.)
-- Scripts that may refresh a session's expiry receive its keys first, in KeySpace.sessionKeyList
-- order: 1 meta, 2 state, 3 tomb, 4 log, 5 devices.
--
-- The session header is one field of the meta hash, `h`: a cmsgpack array (one HGET and one
-- HSET per write instead of a field per figure), indexed by these constants.
local H_UID, H_V, H_EPOCH, H_CREATED, H_UPDATED, H_RECENT, H_BYTES, H_DEV, H_APP = 1, 2, 3, 4, 5, 6, 7, 8, 9
local H_EXP, H_LF, H_LB, H_TF, H_TN, H_DN, H_DG = 10, 11, 12, 13, 14, 15, 16

-- The session id inside its meta key, `<prefix>{<id>}:meta` (store/keys.ts; KEYS[1] of the session
-- scripts): cut by the prefix's length, where a pattern match cost a write ~2k Redis instructions.
local function hf_session_id(metaKey)
  return metaKey:sub(PREFIX_LEN + 2, -7) -- (a method call: no lookup through the globals)
end

-- Every key of the session expires at the same instant, so a session never half-expires. The
-- session's keys are keys[ko+1 .. ko+5] (ko: 0 unless a batch passes several sessions' keys).
local function hf_refresh(keys, exp, ko)
  ko = ko or 0
  for i = ko + 1, ko + 5 do redis.call('PEXPIREAT', keys[i], exp) end
end

-- The next expiry deadline when a refresh is due, else nil. A refresh happens at most once per
-- eighth of the TTL (the per-write cost stays low) and sets the deadline an eighth beyond the TTL
-- (a session always outlives its last activity by at least the TTL).
local function hf_due(exp, now)
  if exp < now + TTL then return now + TTL + math.floor(TTL / 8) end
  return nil
end

-- The session's epoch when a script creates it: 64 fresh random bits the writing node sends with
-- every write and claim (store/randomSeed.ts) and the time (SPEC §9: made anew at every creation).
local function hf_new_epoch(seed, now)
  return seed .. string.format('%x', now)
end

-- A session is being created: whatever an earlier incarnation left under its keys goes first, so
-- nothing of it (state records, tombstones, log entries) can surface in the new one.
local function hf_new_session(keys, ko)
  ko = ko or 0
  redis.call('DEL', keys[ko + 2], keys[ko + 3], keys[ko + 4])
end

-- Takes a place for session `sid` in its owner's index `index` (a sorted set scored by expiry)
-- unless the owner already has `max` live sessions; `score` is the place's expiry. Returns 2
-- reserved now, 1 already listed, 0 quota exceeded.
local function hf_reserve(index, sid, now, max, score)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  if redis.call('ZSCORE', index, sid) then return 1 end
  if redis.call('ZCARD', index) >= max then return 0 end
  redis.call('ZADD', index, score, sid)
  if redis.call('PTTL', index) < score - now then redis.call('PEXPIREAT', index, score) end
  return 2
end
