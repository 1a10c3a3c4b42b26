-- Prelude shared by the session scripts (prepended when a script is loaded; see redis.ts, which
-- also prepends the per-deployment constants TTL, MAX_STATE, LOG_LEN, LOG_MAX and PUB).
-- Scripts that may refresh a session's expiry receive its keys first, in KeySpace.sessionKeyList
-- order: 1 meta, 2 state, 3 tomb, 4 log, 5 devices.
--
-- The session header is one field of the meta hash, `h`: a cmsgpack array (one HGET and one
-- HSET per write instead of a field per figure), indexed by these constants.
local H_UID, H_V, H_EPOCH, H_CREATED, H_UPDATED, H_RECENT, H_BYTES, H_DEV, H_APP = 1, 2, 3, 4, 5, 6, 7, 8, 9
local H_EXP, H_LF, H_LB, H_TF, H_TN, H_DN, H_DG = 10, 11, 12, 13, 14, 15, 16

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
local function hf_new_session(keys, ko)
  ko = ko or 0
  redis.call('DEL', keys[ko + 2], keys[ko + 3], keys[ko + 4])
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
--   'c' .. generation .. ':' .. #device (2 bytes) .. device .. correlationId → "time|version|INCREMENT result"
-- (length-prefixed, so ('tab:1', 'x') and ('tab', '1:x') differ). Records go into the current of
-- two generations (header H_DG, 0 or 1; H_DN counts its records). When it holds DEDUPE_GEN, the
-- other generation's records are deleted and it becomes the current one: a session keeps the
-- newest DEDUPE_GEN to 2 * DEDUPE_GEN - 1 records whatever the number of its devices, and never
-- reads or sorts record values to trim them (sorting 128 records every 64 writes cost a tenth of
-- every write). One small field per record, not one string for all: Redis's Lua hashes every
-- byte of every string it creates.
local DEDUPE_WINDOW = 300000
local DEDUPE_GEN = 64

-- The field names of a write's record in generation 0 and 1. The length prefix is two bytes, not
-- decimal text: number formatting is among the dearest things a script does.
local function hf_dedupe_fields(device, corr)
  local n = #device
  local id = string.char(n % 256, math.floor(n / 256)) .. device .. corr
  return 'c0:' .. id, 'c1:' .. id
end

-- The version and INCREMENT result of a record still within the window, or nil.
local function hf_dedupe_find(record, now)
  if not record then return nil end
  local t, v, value = string.match(record, '^(%d+)|(%d+)|(.*)$')
  if now - tonumber(t) > DEDUPE_WINDOW then return nil end
  return tonumber(v), value
end

-- Deletes every record of generation g (0 or 1), by field name alone.
local function hf_dedupe_drop(meta, g)
  local names = redis.call('HKEYS', meta)
  local mark = g == 0 and 48 or 49 -- '0' | '1'
  local drop = {}
  for i = 1, #names do
    local a, b, c = string.byte(names[i], 1, 3)
    if a == 99 and b == mark and c == 58 then drop[#drop + 1] = names[i] end -- 'c' g ':'
  end
  if #drop > 0 then hf_chunked('HDEL', meta, drop, 200) end
end
