-- Prelude shared by the session scripts (prepended when a script is loaded; see redis.ts, which
-- also prepends the per-deployment constants TTL, MAX_STATE, LOG_LEN, LOG_MAX and PUB).
-- Scripts that may refresh a session's expiry receive its keys first, in KeySpace.sessionKeyList
-- order: 1 meta, 2 state, 3 tomb, 4 log, 5 devices.
--
-- The session header is one field of the meta hash, `h`: a cmsgpack array (one HGET and one
-- HSET per write instead of a field per figure), indexed by these constants.
local H_UID, H_V, H_EPOCH, H_CREATED, H_UPDATED, H_RECENT, H_BYTES, H_DEV, H_APP = 1, 2, 3, 4, 5, 6, 7, 8, 9
local H_EXP, H_LF, H_LB, H_TF, H_TN = 10, 11, 12, 13, 14

-- Every key of the session expires at the same instant, so a session never half-expires.
local function hf_refresh(keys, exp)
  for i = 1, 5 do redis.call('PEXPIREAT', keys[i], exp) end
end

-- The next expiry deadline when a refresh is due, else nil. A refresh happens at most once per
-- eighth of the TTL (the per-write cost stays low) and sets the deadline an eighth beyond the TTL
-- (a session always outlives its last activity by at least the TTL).
local function hf_due(exp, now)
  if exp < now + TTL then return now + TTL + math.floor(TTL / 8) end
  return nil
end

-- A state record is "version|size|stored": returns version, size and where the stored value starts.
local function hf_rec(raw)
  local a = string.find(raw, '|', 1, true)
  local b = string.find(raw, '|', a + 1, true)
  return tonumber(string.sub(raw, 1, a - 1)), tonumber(string.sub(raw, a + 1, b - 1)), b + 1
end

-- HGETALL of the state hash → flat {key, stored, ...} without the record prefixes.
local function hf_state_flat(flat)
  for i = 2, #flat, 2 do
    local _, _, p = hf_rec(flat[i])
    flat[i] = string.sub(flat[i], p)
  end
  return flat
end

-- redis.call with a long argument list, in chunks: unpack() of thousands of values overflows
-- Lua's C stack. `step` must be even for field/value lists.
local function hf_chunked(cmd, key, list, step)
  local n = #list
  local i = 1
  while i <= n do
    local j = math.min(n, i + step - 1)
    redis.call(cmd, key, unpack(list, i, j))
    i = j + 1
  end
end

-- The session's epoch when this script creates it: the writing process's 64 random bits
-- (its instance id's suffix) and the time, so a session created again never reuses one.
local function hf_new_epoch(instance, now)
  return (string.match(instance, '/([%x]+)$') or instance) .. string.format('%x', now)
end

-- Correlation-id dedupe records of a session (meta field 'c'): newest first, each
-- "\1" .. escaped write id .. "\2" .. time .. "|" .. version .. "|" .. INCREMENT result, where the
-- write id is #device .. ':' .. device .. correlationId (length-prefixed: ('tab:1', 'x') and
-- ('tab', '1:x') differ). The escape keeps \1 and \2 out of the id, so a plain find of
-- "\1"..id.."\2" matches exactly one whole id. A record counts for DEDUPE_WINDOW (SPEC §10:
-- 5 minutes): a client may reuse an id after that for another write.
local DEDUPE_WINDOW = 300000
local RING_ESC = {['\1'] = '\3a', ['\2'] = '\3b', ['\3'] = '\3c'}
local function hf_ring_id(device, corr)
  return '\1' .. string.gsub(#device .. ':' .. device .. corr, '[\1\2\3]', RING_ESC) .. '\2'
end

-- The version and value text recorded for `id` (from hf_ring_id) within the window, or nil.
local function hf_ring_find(ring, id, now)
  local p = string.find(ring, id, 1, true)
  if not p then return nil end
  local from = p + #id
  local to = string.find(ring, '\1', from, true)
  local t, v, value = string.match(string.sub(ring, from, to and to - 1 or #ring), '^(%d+)|(%d+)|(.*)$')
  if not t or now - tonumber(t) > DEDUPE_WINDOW then return nil end
  return tonumber(v), value
end

-- The ring with a new record in front, cut back to about half when it outgrows RING_MAX bytes:
-- a session keeps at most that much, whatever the number of its devices.
local RING_MAX = 8192
local function hf_ring_add(ring, id, record)
  local r = id .. record .. (ring or '')
  if #r > RING_MAX then
    local cut = string.find(r, '\1', RING_MAX / 2, true)
    if cut then r = string.sub(r, 1, cut - 1) end
  end
  return r
end
