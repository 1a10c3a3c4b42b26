-- One atomic state change of one session (SessionStore.mutate; store/memory.ts mirrors it), as a
-- function: mutateBatch.lua applies the changes of one event-loop turn in one script call.
-- Redis does not roll a script back, so every check runs before the first write.
--
-- hf_mutate(KEYS, ARGV, ko, ao, an): this change's keys are KEYS[ko+1 .. ko+5] and its arguments
-- ARGV[ao+1 .. ao+an] (offsets rather than copied tables: the batch is read in place). Below, KEYS
-- and ARGV numbers are relative to those offsets.
-- KEYS: 1 meta, 2 state, 3 tomb, 4 log, 5 devices (the session id and its channel are read off
--       KEYS[1])
-- ARGV: 1 control: "op admin rule expectVersion baseVersion mutationId originConn now epochSeed", tokens
--         separated by one space, '-' for none; rule: '-' create freely | 'R' do not create, answer
--         needs_reservation (the caller reserves quota in the owner's index, another slot, first)
--       2 actor, 3 owner, 4 deviceId, 5 appVersion, 6 originNode (instance id), 7 correlationId,
--       8.. op arguments:
--         set: key, stored, size | delete: key | incr: key, delta
--         patch: nChanges, (key, stored, size)*, deleted keys* | merge: nChanges, (key, stored, size)*
--         replace: nKeys, (key, stored, size)*
--       Per-deployment constants come from the prelude: TTL, MAX_STATE, LOG_LEN, LOG_MAX, PUB,
--       PREFIX_LEN (bytes of the key prefix).
-- Returns one cmsgpack array:
--   {'ok', version, created, rebased, valueText, duplicate, stateFlat (merge only) | false,
--    refreshed (0/1: the expiry moved; indexes follow)} followed by the session header as stored
--    (a second msgpack value in the same string; owner, epoch, times, device, app version and
--    expiry come from it: the reply reuses the bytes the write stored instead of packing them again)
--   | {'conflict', current, conflictingKeys|false, stateFlat} | {'not_found'} | {'not_a_number', key}
--   | {'too_large', bytes} | {'needs_reservation'}
--
-- The meta hash holds the header `h` (lib.lua: owner, version, epoch, times, state bytes, expiry,
-- log bookkeeping lf/lb, tombstone floor and count tf/tn, dedupe generation and its count dg/dn),
-- per device that used mutation ids 'm:'..device = the highest one processed, and the session's
-- correlation-id dedupe records 'c0:'.. / 'c1:'.. (hf_dedupe_* below). Everything a write reads
-- is in one HMGET.
--
-- Redis runs this for every write, so it avoids what costs most in Redis's Lua: creating strings
-- (each is hashed and interned), tables and closures, and number-to-text conversions (sprintf).

-- Library functions as upvalues. A Function's globals table is empty, the real globals behind its
-- __index: every `string.sub` or `redis.call` is a metatable lookup and a table read, ~90 Redis
-- instructions, and a write made about a hundred. They are bound on the first call (hf_bind, from
-- mutateBatch.lua): FUNCTION LOAD runs the top level with only redis.register_function in reach.
local rcall, mpack, munpack, to_number, to_string, unpack_list
local s_sub, s_match, s_find, s_char, s_byte, s_format, s_rep, s_gsub
local m_floor, m_abs, m_max, m_min, HUGE
-- BYTE[n]: the one-byte string n (0-255), which is also msgpack's positive fixint n below 128;
-- FIXSTR[n]: msgpack's fixstr header for n bytes (n < 32). Table reads, not string.char calls.
-- Literals, not built in hf_bind: a Redis that refuses Functions runs this as a script, whose top
-- level (and hf_bind) runs on every call: building them with 288 string.char calls cost each call
-- ~23 us (EVALSHA of that alone: 26-30 us against 4-6 us for these literals).
local BYTE = {
  [0] = '\0', '\1', '\2', '\3', '\4', '\5', '\6', '\7', '\8', '\9', '\10', '\11', '\12', '\13', '\14', '\15',
  '\16', '\17', '\18', '\19', '\20', '\21', '\22', '\23', '\24', '\25', '\26', '\27', '\28', '\29', '\30', '\31',
  '\32', '\33', '\34', '\35', '\36', '\37', '\38', '\39', '\40', '\41', '\42', '\43', '\44', '\45', '\46', '\47',
  '\48', '\49', '\50', '\51', '\52', '\53', '\54', '\55', '\56', '\57', '\58', '\59', '\60', '\61', '\62', '\63',
  '\64', '\65', '\66', '\67', '\68', '\69', '\70', '\71', '\72', '\73', '\74', '\75', '\76', '\77', '\78', '\79',
  '\80', '\81', '\82', '\83', '\84', '\85', '\86', '\87', '\88', '\89', '\90', '\91', '\92', '\93', '\94', '\95',
  '\96', '\97', '\98', '\99', '\100', '\101', '\102', '\103', '\104', '\105', '\106', '\107', '\108', '\109', '\110', '\111',
  '\112', '\113', '\114', '\115', '\116', '\117', '\118', '\119', '\120', '\121', '\122', '\123', '\124', '\125', '\126', '\127',
  '\128', '\129', '\130', '\131', '\132', '\133', '\134', '\135', '\136', '\137', '\138', '\139', '\140', '\141', '\142', '\143',
  '\144', '\145', '\146', '\147', '\148', '\149', '\150', '\151', '\152', '\153', '\154', '\155', '\156', '\157', '\158', '\159',
  '\160', '\161', '\162', '\163', '\164', '\165', '\166', '\167', '\168', '\169', '\170', '\171', '\172', '\173', '\174', '\175',
  '\176', '\177', '\178', '\179', '\180', '\181', '\182', '\183', '\184', '\185', '\186', '\187', '\188', '\189', '\190', '\191',
  '\192', '\193', '\194', '\195', '\196', '\197', '\198', '\199', '\200', '\201', '\202', '\203', '\204', '\205', '\206', '\207',
  '\208', '\209', '\210', '\211', '\212', '\213', '\214', '\215', '\216', '\217', '\218', '\219', '\220', '\221', '\222', '\223',
  '\224', '\225', '\226', '\227', '\228', '\229', '\230', '\231', '\232', '\233', '\234', '\235', '\236', '\237', '\238', '\239',
  '\240', '\241', '\242', '\243', '\244', '\245', '\246', '\247', '\248', '\249', '\250', '\251', '\252', '\253', '\254', '\255',
}
local FIXSTR = {
  [0] = '\160', '\161', '\162', '\163', '\164', '\165', '\166', '\167', '\168', '\169', '\170', '\171', '\172', '\173', '\174', '\175',
  '\176', '\177', '\178', '\179', '\180', '\181', '\182', '\183', '\184', '\185', '\186', '\187', '\188', '\189', '\190', '\191',
}
local function hf_bind()
  rcall, mpack, munpack, to_number, to_string, unpack_list = redis.call, cmsgpack.pack, cmsgpack.unpack, tonumber, tostring, unpack
  s_sub, s_match, s_find, s_char, s_byte, s_format, s_rep, s_gsub =
    string.sub, string.match, string.find, string.char, string.byte, string.format, string.rep, string.gsub
  m_floor, m_abs, m_max, m_min, HUGE = math.floor, math.abs, math.max, math.min, math.huge
end

local TOMB_MAX = 1024

-- A state record is "version|size|stored": returns size, where the stored value starts and where
-- the version ends. The version is read only by a rebase (hf_rec_version): a number read is ~1.2k
-- Redis instructions (strtod).
local function hf_rec(raw)
  local a = s_find(raw, '|', 1, true)
  local b = s_find(raw, '|', a + 1, true)
  return to_number(s_sub(raw, a + 1, b - 1)), b + 1, a
end

local function hf_rec_version(r)
  return to_number(s_sub(r[3], 1, r[5] - 1))
end

-- HGETALL of the state hash → flat {key, stored, ...} without the record prefixes.
local function hf_state_flat(flat)
  for i = 2, #flat, 2 do
    local _, p = hf_rec(flat[i])
    flat[i] = s_sub(flat[i], p)
  end
  return flat
end

-- A command with a long argument list, in chunks: unpack() of thousands of values overflows
-- Lua's C stack. `step` must be even for field/value lists.
local function hf_chunked(cmd, key, list, step)
  local n = #list
  local i = 1
  while i <= n do
    local j = m_min(n, i + step - 1)
    rcall(cmd, key, unpack_list(list, i, j))
    i = j + 1
  end
end

-- A number's text exactly as JavaScript writes it (JSON.stringify, which the memory store uses): the
-- fewest significant digits that read back as the same double, in fixed notation when the decimal
-- point falls within -6..21 digits, else d.ddde±x. Both stores then store, size and send one text.
local function hf_number_text(n)
  if n == 0 then return '0' end
  if n == m_floor(n) and m_abs(n) < 1e15 then return s_format('%d', n) end
  local s
  for p = 0, 16 do
    s = s_format('%.' .. p .. 'e', n)
    if to_number(s) == n then break end
  end
  local sign, int, frac, e = s_match(s, '^(-?)(%d)%.?(%d*)e([-+]%d+)$')
  local digits = s_gsub(int .. frac, '0+$', '')
  local k, pt = #digits, to_number(e) + 1
  local out
  if k <= pt and pt <= 21 then
    out = digits .. s_rep('0', pt - k)
  elseif 0 < pt and pt <= 21 then
    out = s_sub(digits, 1, pt) .. '.' .. s_sub(digits, pt + 1)
  elseif -6 < pt and pt <= 0 then
    out = '0.' .. s_rep('0', -pt) .. digits
  else
    local x = pt - 1
    out = s_sub(digits, 1, 1) .. (k > 1 and ('.' .. s_sub(digits, 2)) or '') .. 'e' .. (x >= 0 and '+' or '-') .. m_abs(x)
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
  local id = s_char(n % 256, m_floor(n / 256)) .. device .. corr
  return 'c0:' .. id, 'c1:' .. id
end

-- The version and INCREMENT result of a record still within the window, or nil.
local function hf_dedupe_find(record, now)
  if not record then return nil end
  local t, v, value = s_match(record, '^(%d+)|(%d+)|(.*)$')
  if now - to_number(t) > DEDUPE_WINDOW then return nil end
  return to_number(v), value
end

-- Deletes every record of generation g (0 or 1), by field name alone, and any record a build
-- before the generations left ('c:' ..; never read now, so dropped with the first switch).
local function hf_dedupe_drop(meta, g)
  local names = rcall('HKEYS', meta)
  local mark = g == 0 and 48 or 49 -- '0' | '1'
  local drop = {}
  for i = 1, #names do
    local a, b, c = s_byte(names[i], 1, 3)
    if a == 99 and ((b == mark and c == 58) or b == 58) then drop[#drop + 1] = names[i] end -- 'c' g ':' | 'c:'
  end
  if #drop > 0 then hf_chunked('HDEL', meta, drop, 200) end
end

-- The success reply is msgpack written by hand, one concatenation (packing an 8-field table cost
-- ~9k Redis instructions a write; a helper function for it ~1.5k): the array {'ok', version, created
-- 0/1, rebased 0/1, INCREMENT result (number text, at most 25 bytes: a fixstr), duplicate 0, merged
-- state | false, refreshed 0/1}, as cmsgpack.pack would encode it. hf_duplicate packs the same array.
local OK_HEAD = '\152\162ok' -- fixarray of 8, fixstr 'ok'

-- A number as msgpack, in the width cmsgpack.pack picks: whole numbers 128-65535 by hand (callers
-- inline `n < 128 and BYTE[n]`), anything else, a negative or fractional figure included, by it.
local function hf_mp_uint(n)
  if n >= 128 and n < 65536 and n % 1 == 0 then
    if n < 256 then return '\204' .. BYTE[n] end
    return '\205' .. BYTE[(n - n % 256) / 256] .. BYTE[n % 256]
  end
  return mpack(n)
end

-- The msgpack header of a string of n >= 32 bytes (shorter ones: FIXSTR[n], inline), in the width
-- cmsgpack.pack picks. The frame and the session header are packed by hand, one concatenation
-- each, with these (cmsgpack.pack of their tables cost ~22k Redis instructions a write).
local function hf_mp_strhead(n)
  if n < 256 then return '\217' .. BYTE[n] end
  if n < 65536 then return '\218' .. BYTE[(n - n % 256) / 256] .. BYTE[n % 256] end
  return '\219' .. BYTE[m_floor(n / 16777216)] .. BYTE[m_floor(n / 65536) % 256] .. BYTE[m_floor(n / 256) % 256] .. BYTE[n % 256]
end

-- The reply to a retry: the outcome of the write it repeats, without applying it again.
local function hf_duplicate(rawHeader, version, valueText)
  return mpack({'ok', version, 0, 0, valueText, 1, false, 0}) .. rawHeader
end

-- The whole state as {key, stored, ...} for a conflict reply (none when the session is new).
local function hf_state_now(exists, stateKey)
  if not exists then return {} end
  return hf_state_flat(rcall('HGETALL', stateKey))
end

-- Live records of the keys a change touches, read once into `recs`: {version (false until a
-- rebase reads it, hf_rec_version), size, raw, valueStart, versionEnd} | false.
local function hf_live(recs, exists, stateKey, k)
  local r = recs[k]
  if r == nil then
    local raw = exists and rcall('HGET', stateKey, k)
    if raw then
      local size, p, a = hf_rec(raw)
      r = {false, size, raw, p, a}
    else
      r = false
    end
    recs[k] = r
  end
  return r
end

-- A refusal; with `mark`, the device's mutation id counts as processed (a retry would be refused too).
local function hf_refuse(mark, meta, markField, mid, reply)
  if mark then rcall('HSET', meta, markField, mid) end
  return mpack(reply)
end

local function hf_mutate(KEYS, ARGV, ko, ao, an)
local meta, stateKey, tombKey, logKey = KEYS[ko + 1], KEYS[ko + 2], KEYS[ko + 3], KEYS[ko + 4]
local op, admin, rule, ev, bv, mid, connS, nowS, seed = s_match(ARGV[ao + 1], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
local actor, ownerArg, dev, app, origin, corr = ARGV[ao + 2], ARGV[ao + 3], ARGV[ao + 4], ARGV[ao + 5], ARGV[ao + 6], ARGV[ao + 7]
local useMid = mid ~= '-' and dev ~= ''
local useIdem = not useMid and corr ~= '' and dev ~= ''
local now = to_number(nowS)

-- The header, with the device's mark or the write's dedupe records (one per generation).
local markField, idem0, idem1
local m
if useMid then
  markField = 'm:' .. dev
  m = rcall('HMGET', meta, 'h', markField)
elseif useIdem then
  idem0, idem1 = hf_dedupe_fields(dev, corr)
  m = rcall('HMGET', meta, 'h', idem0, idem1)
else
  m = {rcall('HGET', meta, 'h')}
end
local h = m[1] and munpack(m[1])
local exists = h ~= false and h ~= nil
if exists and h[H_UID] ~= actor and admin ~= '1' then
  return mpack({'not_found'})
end
local owner = exists and h[H_UID] or ownerArg
local current = exists and h[H_V] or 0
local epoch = exists and h[H_EPOCH] or hf_new_epoch(seed, now)
local createdAt = exists and h[H_CREATED] or now

-- Retries: a mutation id at or below the device's mark, or a (device, correlation id) pair seen
-- within the dedupe window, is answered without applying it again.
if exists and useMid and to_number(mid) <= (to_number(m[2]) or 0) then
  return hf_duplicate(m[1], current, '')
end
if useIdem and exists and (m[2] or m[3]) then
  local v, valueText = hf_dedupe_find(m[2], now)
  if not v then v, valueText = hf_dedupe_find(m[3], now) end
  if v then return hf_duplicate(m[1], v, valueText) end
end

-- A refusal a retry would repeat still counts as processing the mutation id (SPEC §10).
local markOnRefusal = useMid and exists

local recs = {}

-- Parse the op into writes {key, stored|false, size, size as text}: the size arrives as text and
-- goes into the state record as it came.
local writes = {}
local deleted = false
local incrValue = ''
local delta = 0
if op == 'set' then
  local sizeText = ARGV[ao + 10]
  writes[1] = {ARGV[ao + 8], ARGV[ao + 9], to_number(sizeText), sizeText}
elseif op == 'delete' then
  writes[1] = {ARGV[ao + 8], false, 0}
elseif op == 'incr' then
  local key = ARGV[ao + 8]
  delta = to_number(ARGV[ao + 9])
  local r = hf_live(recs, exists, stateKey, key)
  local base = 0
  if r then
    local old = s_sub(r[3], r[4])
    base = to_number(old)
    -- tonumber also accepts hex and padded text that JSON never produces; only plain JSON numbers count.
    if base == nil or not s_match(old, '^-?%d+%.?%d*[eE]?[-+]?%d*$') then
      return hf_refuse(markOnRefusal, meta, markField, mid, {'not_a_number', key})
    end
  end
  local n = base + delta
  if n ~= n or n == HUGE or n == -HUGE then
    return hf_refuse(markOnRefusal, meta, markField, mid, {'not_a_number', key})
  end
  incrValue = hf_number_text(n)
  local size = #key + #incrValue
  writes[1] = {key, incrValue, size, to_string(size)}
else
  local n = to_number(ARGV[ao + 8])
  local i = ao + 9
  for _ = 1, n do
    local sizeText = ARGV[i + 2]
    writes[#writes + 1] = {ARGV[i], ARGV[i + 1], to_number(sizeText), sizeText}
    i = i + 3
  end
  if op == 'patch' then
    local last = ao + an
    if i <= last then deleted = {} end
    while i <= last do
      writes[#writes + 1] = {ARGV[i], false, 0}
      deleted[#deleted + 1] = ARGV[i]
      i = i + 1
    end
  end
end

-- Version checks.
if ev ~= '-' and to_number(ev) ~= current + 1 then
  return hf_refuse(markOnRefusal, meta, markField, mid, {'conflict', current, false, hf_state_now(exists, stateKey)})
end
local rebased = 0
local tf = exists and h[H_TF] or 0
if bv ~= '-' then
  local base = to_number(bv)
  if base > current then
    return hf_refuse(markOnRefusal, meta, markField, mid, {'conflict', current, {}, hf_state_now(exists, stateKey)})
  elseif base < current then
    local conflicting, seen = {}, {}
    for j = 1, #writes do
      local k = writes[j][1]
      if not seen[k] then
        seen[k] = true
        local r = hf_live(recs, exists, stateKey, k)
        local v
        if r then
          v = r[1] or hf_rec_version(r)
        else
          -- Deleted keys keep their deletion version as a tombstone; pruned tombstones are covered
          -- by the floor, conservatively (a key unknown here may have been deleted up to tf).
          v = to_number(exists and rcall('HGET', tombKey, k) or '0')
          if v < tf then v = tf end
        end
        if v > base then conflicting[#conflicting + 1] = k end
      end
    end
    if #conflicting > 0 then
      return hf_refuse(markOnRefusal, meta, markField, mid, {'conflict', current, conflicting, hf_state_now(exists, stateKey)})
    end
    rebased = 1
  end
end

-- Size accounting, and which keys leave the state (tombstones are kept only for keys that existed).
local prevBytes = exists and h[H_BYTES] or 0
local bytes = prevBytes
local gone = {}
if op == 'replace' then
  bytes = 0
  local newKeys = {}
  for j = 1, #writes do
    bytes = bytes + writes[j][3]
    newKeys[writes[j][1]] = true
  end
  if prevBytes > 0 then
    local old = rcall('HKEYS', stateKey)
    for j = 1, #old do
      if not newKeys[old[j]] then gone[#gone + 1] = old[j] end
    end
  end
else
  local many = #writes > 1
  for j = 1, #writes do
    local k = writes[j][1]
    local r = hf_live(recs, exists, stateKey, k)
    if r then bytes = bytes - r[2] end
    if writes[j][2] then
      bytes = bytes + writes[j][3]
      -- A key written twice in one change is counted once.
      if many then recs[k] = {0, writes[j][3], '', 0} end
    elseif r then
      gone[#gone + 1] = k
      if many then recs[k] = false end
    end
  end
end
if bytes > MAX_STATE then
  return hf_refuse(markOnRefusal, meta, markField, mid, {'too_large', bytes})
end

-- Creating the session: the caller reserves the owner's quota first when it is limited.
if not exists and rule == 'R' then return mpack({'needs_reservation'}) end

-- All checks passed: write.
if not exists then hf_new_session(KEYS, ko) end
local version = current + 1
local vs = to_string(version)
local exp = exists and h[H_EXP] or 0
local refreshed = hf_due(exp, now)
if refreshed then exp = refreshed end
-- Keys this write brings into being get the session's expiry (a list only when there are any).
local createdKeys = false

if op == 'replace' and prevBytes > 0 then rcall('DEL', stateKey) end
-- Sets before deletes: the hash is only ever emptied when the state is, so it exists (and keeps
-- its expiry) exactly when prevBytes > 0; and a key both set and deleted ends deleted, as in
-- store/memory.ts.
local setAny = false
if #writes == 1 then
  local w = writes[1]
  if w[2] then
    rcall('HSET', stateKey, w[1], vs .. '|' .. w[4] .. '|' .. w[2])
    setAny = true
  end
else
  local sets = {}
  for j = 1, #writes do
    local w = writes[j]
    if w[2] then
      sets[#sets + 1] = w[1]
      sets[#sets + 1] = vs .. '|' .. w[4] .. '|' .. w[2]
    end
  end
  if #sets > 0 then
    hf_chunked('HSET', stateKey, sets, 200)
    setAny = true
  end
end
if setAny and (prevBytes == 0 or op == 'replace') then createdKeys = {stateKey} end
if op ~= 'replace' and #gone > 0 then hf_chunked('HDEL', stateKey, gone, 200) end

local tn = exists and h[H_TN] or 0
if #gone > 0 then
  if tn + #gone > TOMB_MAX then
    -- Bounded: drop every tombstone and raise the floor to this version instead.
    rcall('DEL', tombKey)
    tf, tn = version, 0
  else
    local targs = {}
    for j = 1, #gone do
      targs[#targs + 1] = gone[j]
      targs[#targs + 1] = vs
    end
    if tn == 0 then
      createdKeys = createdKeys or {}
      createdKeys[#createdKeys + 1] = tombKey
    end
    hf_chunked('HSET', tombKey, targs, 200)
    tn = tn + #gone
  end
end

-- The frame peers and resuming clients see: the layout of protocol/src/bus.ts UpdateFrame.
local fields = false
local key, value = '', ''
if op == 'set' or op == 'delete' or op == 'incr' then
  key = writes[1][1]
  value = writes[1][2] or ''
elseif op == 'patch' or op == 'replace' then
  fields = {}
  for j = 1, #writes do
    if writes[j][2] then
      fields[#fields + 1] = writes[j][1]
      fields[#fields + 1] = writes[j][2]
    end
  end
else
  fields = hf_state_flat(rcall('HGETALL', stateKey))
end
-- lib.lua's hf_session_id, inlined: a Lua call costs a write ~0.8k Redis instructions.
local sessionId = s_sub(meta, PREFIX_LEN + 2, -7)
-- (empty field lists travel as false, the connection number as its text: the decoder takes both)
-- Packed by hand as the array {1, sessionId, version, origin, connS, dev, corr, op, key, value,
-- delta, fields, deleted, now, epoch}: byte for byte what cmsgpack.pack makes of it.
-- Each field's header is written inline: a helper call per field cost more than cmsgpack.pack. The
-- version and the time, which the header and the reply use too, are packed once.
local nowPacked = mpack(now) -- (a time in ms is past 32 bits: msgpack's uint64, as cmsgpack writes it)
local versionPacked = version < 128 and BYTE[version] or hf_mp_uint(version)
local frame = '\159\1' .. (#sessionId < 32 and FIXSTR[#sessionId] or hf_mp_strhead(#sessionId)) .. sessionId .. versionPacked
  .. (#origin < 32 and FIXSTR[#origin] or hf_mp_strhead(#origin)) .. origin .. (#connS < 32 and FIXSTR[#connS] or hf_mp_strhead(#connS)) .. connS .. (#dev < 32 and FIXSTR[#dev] or hf_mp_strhead(#dev)) .. dev .. (#corr < 32 and FIXSTR[#corr] or hf_mp_strhead(#corr)) .. corr
  .. (#op < 32 and FIXSTR[#op] or hf_mp_strhead(#op)) .. op .. (#key < 32 and FIXSTR[#key] or hf_mp_strhead(#key)) .. key .. (#value < 32 and FIXSTR[#value] or hf_mp_strhead(#value)) .. value
  .. (delta == 0 and '\0' or mpack(delta)) .. (fields and mpack(fields) or '\194') .. (deleted and mpack(deleted) or '\194')
  .. nowPacked .. (#epoch < 32 and FIXSTR[#epoch] or hf_mp_strhead(#epoch)) .. epoch

-- Log id = version, so resume is XRANGE (last+1)-0 + with no bookkeeping.
local lf = exists and h[H_LF] or 0
local lb = exists and h[H_LB] or 0
if lf == 0 then
  -- The session's first log entry. A session made by hf_new_session has no log; one claimed by an
  -- older build (during a rolling deploy) may still hold an earlier incarnation's, with higher ids
  -- XADD would refuse after the state was already written.
  if exists then rcall('DEL', logKey) end
  lf, lb = version, 0
  createdKeys = createdKeys or {}
  createdKeys[#createdKeys + 1] = logKey
end
rcall('XADD', logKey, vs .. '-0', 'f', frame)
lb = lb + #frame
-- Trim by entries and by bytes, each in batches of an eighth (past the limit, back to 7/8 of it for
-- bytes), so a log at its limit is not read back on every write; keep the newest.
local logLength, logMax = LOG_LEN, LOG_MAX
local byteTarget = logMax - m_floor(logMax / 8)
local count = version - lf + 1
if count > logLength + m_max(1, m_floor(logLength / 8)) or lb > logMax then
  local first, freed, cursor = lf, 0, '-'
  local done = false
  while not done do
    local batch = rcall('XRANGE', logKey, cursor, '+', 'COUNT', 32)
    if #batch == 0 then break end
    for j = 1, #batch do
      local left = version - first + 1
      if left <= 1 or (left <= logLength and lb - freed <= byteTarget) then
        done = true
        break
      end
      freed = freed + #batch[j][2][2]
      first = to_number(s_match(batch[j][1], '^(%d+)')) + 1
    end
    cursor = '(' .. batch[#batch][1]
  end
  if first > lf then
    rcall('XTRIM', logKey, 'MINID', first .. '-0')
    lf, lb = first, lb - freed
  end
end

-- The header {owner, version, epoch, createdAt, updatedAt, recent, bytes, device, app, exp, lf, lb,
-- tf, tn, dn, dg} (lib.lua's H_*), packed by hand like the frame: an array of 16 is an array16.
local recent = owner == ownerArg and now or (exists and h[H_RECENT] or now)
local devH = dev ~= '' and dev or (exists and h[H_DEV] or '')
local appH = app ~= '' and app or (exists and h[H_APP] or '')
local dn = exists and h[H_DN] or 0
local dg = exists and h[H_DG] or 0
local idemField
if useIdem then
  idemField = dg == 0 and idem0 or idem1
  -- A stale record of the same id in this generation is replaced, not added.
  if not (exists and m[2 + dg]) then
    dn = dn + 1
    if dn >= DEDUPE_GEN then
      hf_dedupe_drop(meta, 1 - dg)
      dg, dn = 1 - dg, 0
    end
  end
end
local headerText = '\220\0\16' .. (#owner < 32 and FIXSTR[#owner] or hf_mp_strhead(#owner)) .. owner .. versionPacked .. (#epoch < 32 and FIXSTR[#epoch] or hf_mp_strhead(#epoch)) .. epoch
  .. (createdAt == now and nowPacked or mpack(createdAt)) .. nowPacked .. (recent == now and nowPacked or mpack(recent))
  .. (bytes < 128 and BYTE[bytes] or hf_mp_uint(bytes)) .. (#devH < 32 and FIXSTR[#devH] or hf_mp_strhead(#devH)) .. devH .. (#appH < 32 and FIXSTR[#appH] or hf_mp_strhead(#appH)) .. appH .. mpack(exp)
  .. (lf < 128 and BYTE[lf] or hf_mp_uint(lf)) .. (lb < 128 and BYTE[lb] or hf_mp_uint(lb)) .. (tf < 128 and BYTE[tf] or hf_mp_uint(tf)) .. (tn < 128 and BYTE[tn] or hf_mp_uint(tn)) .. (dn < 128 and BYTE[dn] or hf_mp_uint(dn)) .. (dg < 128 and BYTE[dg] or hf_mp_uint(dg))
if useMid then
  rcall('HSET', meta, 'h', headerText, markField, mid)
elseif useIdem then
  rcall('HSET', meta, 'h', headerText, idemField, nowS .. '|' .. vs .. '|' .. incrValue)
else
  rcall('HSET', meta, 'h', headerText)
end

if refreshed then
  hf_refresh(KEYS, exp, ko)
elseif createdKeys then
  for j = 1, #createdKeys do rcall('PEXPIREAT', createdKeys[j], exp) end
end

rcall(PUB, s_sub(meta, 1, -5) .. 'ch', frame)

return OK_HEAD .. versionPacked .. (current == 0 and '\1' or '\0') .. (rebased == 1 and '\1' or '\0')
  .. FIXSTR[#incrValue] .. incrValue .. '\0' .. (op == 'merge' and mpack(fields) or '\194') .. (refreshed and '\1' or '\0')
  .. headerText
end
