-- Prelude shared by the session scripts (prepended when a script is loaded; see redis.ts, which
-- also prepends the per-deployment constants TTL, MAX_STATE, LOG_LEN, LOG_MAX and PUB).
-- Scripts that may refresh a session's expiry receive its keys first, in KeySpace.sessionKeyList
-- order: 1 meta, 2 state, 3 tomb, 4 log, 5 devices.
--
-- The session header is one field of the meta hash, `h`: a cmsgpack array (one HGET and one
-- HSET per write instead of a field per figure), indexed by these constants.
local H_UID, H_V, H_EPOCH, H_CREATED, H_UPDATED, H_RECENT, H_BYTES, H_DEV, H_APP = 1, 2, 3, 4, 5, 6, 7, 8, 9
local H_EXP, H_LF, H_LB, H_TF, H_TN, H_DN = 10, 11, 12, 13, 14, 15

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

-- The session's epoch when a script creates it: the writing store's 64 random bits (RedisStore's
-- epoch seed, the same for claim and mutate) and the time, so a session created again never reuses one.
local function hf_new_epoch(seed, now)
  return seed .. string.format('%x', now)
end

-- A session is being created: whatever an earlier incarnation left under its keys goes first, so
-- nothing of it (state records, tombstones, log entries) can surface in the new one.
local function hf_new_session(keys)
  redis.call('DEL', keys[2], keys[3], keys[4])
end

-- A number's text exactly as JavaScript writes it (JSON.stringify, which the memory store uses): the
-- fewest significant digits that read back as the same double, in fixed notation when the decimal
-- point falls within -6..21 digits, else d.ddde±x. Both stores then store, size and send one text.
local function hf_number_text(n)
  if n == 0 then return '0' end
  if n == math.floor(n) and math.abs(n) < 1e15 then return string.format('%d', n) end
  local s
  for p = 0, 16 do
    s = string.format('%.' .. p .. 'e', n)
    if tonumber(s) == n then break end
  end
  local sign, int, frac, e = string.match(s, '^(-?)(%d)%.?(%d*)e([-+]%d+)$')
  local digits = string.gsub(int .. frac, '0+$', '')
  local k, pt = #digits, tonumber(e) + 1
  local out
  if k <= pt and pt <= 21 then
    out = digits .. string.rep('0', pt - k)
  elseif 0 < pt and pt <= 21 then
    out = string.sub(digits, 1, pt) .. '.' .. string.sub(digits, pt + 1)
  elseif -6 < pt and pt <= 0 then
    out = '0.' .. string.rep('0', -pt) .. digits
  else
    local x = pt - 1
    out = string.sub(digits, 1, 1) .. (k > 1 and ('.' .. string.sub(digits, 2)) or '') .. 'e' .. (x >= 0 and '+' or '-') .. math.abs(x)
  end
  return sign .. out
end

-- Correlation-id dedupe records of a session, in its meta hash (SPEC §10: a record counts for
-- DEDUPE_WINDOW, 5 minutes; after that a client may reuse the id for another write):
--   'c:' .. #device .. ':' .. device .. correlationId  →  "time|version|INCREMENT result"
-- (length-prefixed, so ('tab:1', 'x') and ('tab', '1:x') differ). The header counts them (H_DN);
-- past DEDUPE_MAX the newest DEDUPE_KEEP within the window stay, so a session keeps a bounded number
-- whatever the number of its devices, and trimming costs a write 1/64th of a pass on average.
-- One small field per record, not one string for all: Redis's Lua hashes every byte of every
-- string it creates, and a session-wide record string cost more than the rest of the write.
local DEDUPE_WINDOW = 300000
local DEDUPE_MAX, DEDUPE_KEEP = 128, 64
local function hf_dedupe_field(device, corr)
  return 'c:' .. #device .. ':' .. device .. corr
end

-- The version and INCREMENT result of a record still within the window, or nil.
local function hf_dedupe_find(record, now)
  local t, v, value = string.match(record, '^(%d+)|(%d+)|(.*)$')
  if now - tonumber(t) > DEDUPE_WINDOW then return nil end
  return tonumber(v), value
end

-- Keeps the newest DEDUPE_KEEP records within the window and deletes the rest; returns how many stay.
local function hf_dedupe_trim(meta, now)
  local flat = redis.call('HGETALL', meta)
  local recs = {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'c:' then
      local t, v = string.match(flat[i + 1], '^(%d+)|(%d+)|')
      recs[#recs + 1] = {flat[i], tonumber(v), tonumber(t)}
    end
  end
  table.sort(recs, function(a, b) return a[2] > b[2] end)
  local drop, kept = {}, 0
  for i = 1, #recs do
    if kept < DEDUPE_KEEP and now - recs[i][3] <= DEDUPE_WINDOW then
      kept = kept + 1
    else
      drop[#drop + 1] = recs[i][1]
    end
  end
  if #drop > 0 then hf_chunked('HDEL', meta, drop, 200) end
  return kept
end
