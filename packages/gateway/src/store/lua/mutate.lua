-- One atomic state change of one session (SessionStore.mutate; store/memory.ts mirrors it), as a
-- function: mutateBatch.lua applies the changes of one event-loop turn in one script call.
-- Redis does not roll a script back, so every check runs before the first write.
--
-- KEYS (this change's): 1 meta, 2 state, 3 tomb, 4 log, 5 devices (the session id and its
--       channel are read off KEYS[1])
-- ARGV: 1 control: "op admin rule expectVersion baseVersion mutationId originConn now epochSeed", tokens
--         separated by one space, '-' for none; rule: '-' create freely | 'R' do not create, answer
--         needs_reservation (the caller reserves quota in the owner's index, another slot, first)
--       2 actor, 3 owner, 4 deviceId, 5 appVersion, 6 originNode (instance id), 7 correlationId,
--       8.. op arguments:
--         set: key, stored, size | delete: key | incr: key, delta
--         patch: nChanges, (key, stored, size)*, deleted keys* | merge: nChanges, (key, stored, size)*
--         replace: nKeys, (key, stored, size)*
--       Per-deployment constants come from the prelude: TTL, MAX_STATE, LOG_LEN, LOG_MAX, PUB.
-- Returns one cmsgpack array:
--   {'ok', version, created, rebased, valueText, duplicate, updatedAt, createdAt, deviceId, appVersion,
--    stateFlat (merge only), owner, epoch, expiry, refreshed (0/1: the expiry moved; indexes follow)}
--   | {'conflict', current, conflictingKeys|false, stateFlat} | {'not_found'} | {'not_a_number', key}
--   | {'too_large', bytes} | {'needs_reservation'}
--
-- The meta hash holds the header `h` (lib.lua: owner, version, epoch, times, state bytes, expiry,
-- log bookkeeping lf/lb, tombstone floor and count tf/tn, dedupe record count dn), per device that
-- used mutation ids 'm:'..device = the highest one processed, and the session's correlation-id
-- dedupe records 'c:'.. (lib.lua hf_dedupe_*). Everything a write reads is in one HMGET.

local TOMB_MAX = 1024

local function hf_mutate(KEYS, ARGV)
local meta, stateKey, tombKey, logKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op, admin, rule, ev, bv, mid, connS, nowS, seed = string.match(ARGV[1], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
local actor, ownerArg, dev, app, origin, corr = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local useMid = mid ~= '-' and dev ~= ''
local useIdem = not useMid and corr ~= '' and dev ~= ''
local now = tonumber(nowS)

local dedupeField = useIdem and hf_dedupe_field(dev, corr)
-- The header, with the device's mark or the write's dedupe record when there is one.
local extra = useMid and ('m:' .. dev) or dedupeField
local m = extra and redis.call('HMGET', meta, 'h', extra) or {redis.call('HGET', meta, 'h'), false}
local h = m[1] and cmsgpack.unpack(m[1])
local exists = h ~= false and h ~= nil
if exists and h[H_UID] ~= actor and admin ~= '1' then
  return cmsgpack.pack({'not_found'})
end
local owner = exists and h[H_UID] or ownerArg
local current = exists and h[H_V] or 0
local epoch = exists and h[H_EPOCH] or hf_new_epoch(seed, now)
local createdAt = exists and h[H_CREATED] or now

-- Retries: a mutation id at or below the device's mark, or a (device, correlation id) pair seen
-- within the dedupe window, is answered without applying it again.
local function duplicate(version, valueText)
  return cmsgpack.pack({'ok', version, 0, 0, valueText, 1, h[H_UPDATED], createdAt, h[H_DEV], h[H_APP],
    {}, owner, epoch, h[H_EXP], 0})
end
if exists and useMid and tonumber(mid) <= (tonumber(m[2]) or 0) then
  return duplicate(current, '')
end
if useIdem and exists and m[2] then
  local v, valueText = hf_dedupe_find(m[2], now)
  if v then return duplicate(v, valueText) end
end

-- A refusal a retry would repeat still counts as processing the mutation id (SPEC §10).
local function refuse(reply)
  if useMid and exists then redis.call('HSET', meta, 'm:' .. dev, mid) end
  return cmsgpack.pack(reply)
end

local function stateNow()
  if not exists then return {} end
  return hf_state_flat(redis.call('HGETALL', stateKey))
end

-- Live records of the keys this change touches, read once: {version, size, raw, valueStart} | false.
local recs = {}
local function rec(k)
  local r = recs[k]
  if r == nil then
    local raw = exists and redis.call('HGET', stateKey, k)
    if raw then
      local v, s, p = hf_rec(raw)
      r = {v, s, raw, p}
    else
      r = false
    end
    recs[k] = r
  end
  return r
end

-- Parse the op into writes {key, stored|false, size}.
local writes = {}
local deleted = {}
local incrValue = ''
local delta = 0
if op == 'set' then
  writes[1] = {ARGV[8], ARGV[9], tonumber(ARGV[10])}
elseif op == 'delete' then
  writes[1] = {ARGV[8], false, 0}
elseif op == 'incr' then
  local key = ARGV[8]
  delta = tonumber(ARGV[9])
  local r = rec(key)
  local base = 0
  if r then
    local old = string.sub(r[3], r[4])
    base = tonumber(old)
    -- tonumber also accepts hex and padded text that JSON never produces; only plain JSON numbers count.
    if base == nil or not string.match(old, '^-?%d+%.?%d*[eE]?[-+]?%d*$') then
      return refuse({'not_a_number', key})
    end
  end
  local n = base + delta
  if n ~= n or n == math.huge or n == -math.huge then
    return refuse({'not_a_number', key})
  end
  incrValue = hf_number_text(n)
  writes[1] = {key, incrValue, #key + #incrValue}
else
  local n = tonumber(ARGV[8])
  local i = 9
  for _ = 1, n do
    writes[#writes + 1] = {ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])}
    i = i + 3
  end
  if op == 'patch' then
    while i <= #ARGV do
      writes[#writes + 1] = {ARGV[i], false, 0}
      deleted[#deleted + 1] = ARGV[i]
      i = i + 1
    end
  end
end

-- Version checks.
if ev ~= '-' and tonumber(ev) ~= current + 1 then
  return refuse({'conflict', current, false, stateNow()})
end
local rebased = 0
local tf = exists and h[H_TF] or 0
if bv ~= '-' then
  local base = tonumber(bv)
  if base > current then
    return refuse({'conflict', current, {}, stateNow()})
  elseif base < current then
    local conflicting, seen = {}, {}
    for j = 1, #writes do
      local k = writes[j][1]
      if not seen[k] then
        seen[k] = true
        local r = rec(k)
        local v
        if r then
          v = r[1]
        else
          -- Deleted keys keep their deletion version as a tombstone; pruned tombstones are covered
          -- by the floor, conservatively (a key unknown here may have been deleted up to tf).
          v = tonumber(exists and redis.call('HGET', tombKey, k) or '0')
          if v < tf then v = tf end
        end
        if v > base then conflicting[#conflicting + 1] = k end
      end
    end
    if #conflicting > 0 then
      return refuse({'conflict', current, conflicting, stateNow()})
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
    local old = redis.call('HKEYS', stateKey)
    for j = 1, #old do
      if not newKeys[old[j]] then gone[#gone + 1] = old[j] end
    end
  end
else
  for j = 1, #writes do
    local k = writes[j][1]
    local r = rec(k)
    if r then bytes = bytes - r[2] end
    if writes[j][2] then
      bytes = bytes + writes[j][3]
      recs[k] = {0, writes[j][3], '', 0}
    elseif r then
      gone[#gone + 1] = k
      recs[k] = false
    end
  end
end
if bytes > MAX_STATE then
  return refuse({'too_large', bytes})
end

-- Creating the session: the caller reserves the owner's quota first when it is limited.
if not exists and rule == 'R' then return cmsgpack.pack({'needs_reservation'}) end

-- All checks passed: write.
if not exists then hf_new_session(KEYS) end
local version = current + 1
local vs = tostring(version)
local exp = exists and h[H_EXP] or 0
local refreshed = hf_due(exp, now)
if refreshed then exp = refreshed end
local createdKeys = {}

local sets = {}
for j = 1, #writes do
  local w = writes[j]
  if w[2] then
    sets[#sets + 1] = w[1]
    sets[#sets + 1] = vs .. '|' .. w[3] .. '|' .. w[2]
  end
end
if op == 'replace' and prevBytes > 0 then redis.call('DEL', stateKey) end
-- Sets before deletes: the hash is only ever emptied when the state is, so it exists (and keeps
-- its expiry) exactly when prevBytes > 0; and a key both set and deleted ends deleted, as in
-- store/memory.ts.
if #sets > 0 then
  hf_chunked('HSET', stateKey, sets, 200)
  if prevBytes == 0 or op == 'replace' then createdKeys[#createdKeys + 1] = stateKey end
end
if op ~= 'replace' and #gone > 0 then hf_chunked('HDEL', stateKey, gone, 200) end

local tn = exists and h[H_TN] or 0
if #gone > 0 then
  if tn + #gone > TOMB_MAX then
    -- Bounded: drop every tombstone and raise the floor to this version instead.
    redis.call('DEL', tombKey)
    tf, tn = version, 0
  else
    local targs = {}
    for j = 1, #gone do
      targs[#targs + 1] = gone[j]
      targs[#targs + 1] = vs
    end
    if tn == 0 then createdKeys[#createdKeys + 1] = tombKey end
    hf_chunked('HSET', tombKey, targs, 200)
    tn = tn + #gone
  end
end

-- The frame peers and resuming clients see: the layout of protocol/src/bus.ts UpdateFrame.
local fields = {}
local key, value = '', ''
if op == 'set' or op == 'delete' or op == 'incr' then
  key = writes[1][1]
  value = writes[1][2] or ''
elseif op == 'patch' or op == 'replace' then
  for j = 1, #writes do
    if writes[j][2] then
      fields[#fields + 1] = writes[j][1]
      fields[#fields + 1] = writes[j][2]
    end
  end
else
  fields = hf_state_flat(redis.call('HGETALL', stateKey))
end
local sessionId = string.match(meta, '{([^}]*)}')
local frame = cmsgpack.pack({1, sessionId, version, origin, tonumber(connS), dev, corr,
  op, key, value, delta, fields, deleted, now, epoch})

-- Log id = version, so resume is XRANGE (last+1)-0 + with no bookkeeping.
local lf = exists and h[H_LF] or 0
local lb = exists and h[H_LB] or 0
if lf == 0 then
  lf, lb = version, 0
  createdKeys[#createdKeys + 1] = logKey
end
redis.call('XADD', logKey, vs .. '-0', 'f', frame)
lb = lb + #frame
-- Trim by entries and by bytes, each in batches of an eighth (past the limit, back to 7/8 of it for
-- bytes), so a log at its limit is not read back on every write; keep the newest.
local logLength, logMax = LOG_LEN, LOG_MAX
local byteTarget = logMax - math.floor(logMax / 8)
local count = version - lf + 1
if count > logLength + math.max(1, math.floor(logLength / 8)) or lb > logMax then
  local first, freed, cursor = lf, 0, '-'
  local done = false
  while not done do
    local batch = redis.call('XRANGE', logKey, cursor, '+', 'COUNT', 32)
    if #batch == 0 then break end
    for j = 1, #batch do
      local left = version - first + 1
      if left <= 1 or (left <= logLength and lb - freed <= byteTarget) then
        done = true
        break
      end
      freed = freed + #batch[j][2][2]
      first = tonumber(string.match(batch[j][1], '^(%d+)')) + 1
    end
    cursor = '(' .. batch[#batch][1]
  end
  if first > lf then
    redis.call('XTRIM', logKey, 'MINID', first .. '-0')
    lf, lb = first, lb - freed
  end
end

local header = {owner, version, epoch, createdAt, now, exists and h[H_RECENT] or now, bytes,
  dev ~= '' and dev or (exists and h[H_DEV] or ''), app ~= '' and app or (exists and h[H_APP] or ''),
  exp, lf, lb, tf, tn, exists and h[H_DN] or 0}
if owner == ownerArg then header[H_RECENT] = now end
if useMid then
  redis.call('HSET', meta, 'h', cmsgpack.pack(header), 'm:' .. dev, mid)
elseif useIdem then
  local record = nowS .. '|' .. vs .. '|' .. incrValue
  -- A stale record of the same id is replaced, not added.
  header[H_DN] = header[H_DN] + ((exists and m[2]) and 0 or 1)
  if header[H_DN] > DEDUPE_MAX then
    redis.call('HSET', meta, dedupeField, record)
    header[H_DN] = hf_dedupe_trim(meta, now)
    redis.call('HSET', meta, 'h', cmsgpack.pack(header))
  else
    redis.call('HSET', meta, 'h', cmsgpack.pack(header), dedupeField, record)
  end
else
  redis.call('HSET', meta, 'h', cmsgpack.pack(header))
end

if refreshed then
  hf_refresh(KEYS, exp)
else
  for j = 1, #createdKeys do redis.call('PEXPIREAT', createdKeys[j], exp) end
end

redis.call(PUB, string.sub(meta, 1, -5) .. 'ch', frame)

return cmsgpack.pack({'ok', version, current == 0 and 1 or 0, rebased, incrValue, 0, now, createdAt,
  header[H_DEV], header[H_APP], op == 'merge' and fields or {}, owner, epoch, exp, refreshed and 1 or 0})
end
