-- One atomic state change of one session (SessionStore.mutate; store/memory.ts mirrors it).
-- Redis does not roll a script back, so every check runs before the first write.
--
-- KEYS: 1 meta, 2 state, 3 tomb, 4 log, 5 devices, 6 idem, 7 idemPrev,
--       [8 owner's session index, 9 global index: single Redis only, written when this creates the session]
-- ARGV: 1 sessionId, 2 actor, 3 admin(0/1), 4 owner, 5 op, 6 expectVersion|'', 7 baseVersion|'',
--       8 deviceId, 9 appVersion, 10 originNode, 11 originConn, 12 correlationId, 13 mutationId|'',
--       14 now(ms), 15 ttl(ms), 16 maxStateBytes, 17 logLength, 18 logMaxBytes, 19 channel,
--       20 PUBLISH|SPUBLISH, 21 dedupe window(ms), 22 epoch for a new session,
--       23 creation rule: '' create freely | 'R' do not create, answer needs_reservation (Redis
--          Cluster: the caller reserves quota in the owner's index, in another slot, first)
--          | n create only while KEYS[8] holds fewer than n live sessions,
--       24.. op arguments:
--         set: key, stored, size | delete: key | incr: key, delta
--         patch: nChanges, (key, stored, size)*, deleted keys* | merge: nChanges, (key, stored, size)*
--         replace: nKeys, (key, stored, size)*
-- Returns one cmsgpack array:
--   {'ok', version, created, rebased, valueText, duplicate, updatedAt, createdAt, deviceId, appVersion,
--    stateFlat (merge only), owner, epoch, expiry, refreshed (0/1: the expiry moved; indexes follow)}
--   | {'conflict', current, conflictingKeys|false, stateFlat} | {'not_found'} | {'not_a_number', key}
--   | {'too_large', bytes} | {'quota_exceeded'} | {'needs_reservation'}
--
-- Meta fields: uid, v, epoch, created, updated, recent (last write or claim by the owner), bytes,
-- dev, app, exp (expiry deadline of every key), lf/lb (first logged version, log bytes),
-- tf/tn (tombstone floor and count), in/it (dedupe records and generation start),
-- 'm:'..device (highest mutation id processed for the device).

local TOMB_MAX = 1024
local IDEM_MAX = 256

local meta, stateKey, tombKey, logKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local dev, corr, mid = ARGV[8], ARGV[12], ARGV[13]
local useMid = mid ~= '' and dev ~= ''
local useIdem = not useMid and corr ~= '' and dev ~= ''
local now, ttl = tonumber(ARGV[14]), tonumber(ARGV[15])

local m = redis.call('HMGET', meta, 'uid', 'v', 'epoch', 'created', 'updated', 'bytes', 'dev', 'app', 'exp',
  'lf', 'lb', 'tf', 'tn', 'in', 'it', useMid and ('m:' .. dev) or 'v')
local exists = m[1] ~= false
if exists and m[1] ~= ARGV[2] and ARGV[3] ~= '1' then
  return cmsgpack.pack({'not_found'})
end
local owner = exists and m[1] or ARGV[4]
local current = exists and tonumber(m[2]) or 0
local epoch = exists and m[3] or ARGV[22]
local createdAt = exists and tonumber(m[4]) or now

-- Retries: a mutation id at or below the device's mark, or a (device, correlation id) pair seen
-- within the dedupe window, is answered without applying it again.
local function duplicate(version, valueText)
  return cmsgpack.pack({'ok', version, 0, 0, valueText, 1, tonumber(m[5]) or now, createdAt, m[7] or '', m[8] or '',
    {}, owner, epoch, tonumber(m[9]) or 0, 0})
end
if exists and useMid and tonumber(mid) <= (tonumber(m[16]) or 0) then
  return duplicate(current, '')
end
local idemField
if useIdem then
  -- Length-prefixed: ('tab:1', 'x') and ('tab', '1:x') are different writes.
  idemField = #dev .. ':' .. dev .. corr
  if exists then
    local hit = redis.call('HGET', KEYS[6], idemField)
    if not hit and now - (tonumber(m[15]) or 0) < tonumber(ARGV[21]) then hit = redis.call('HGET', KEYS[7], idemField) end
    if hit then
      local bar = string.find(hit, '|', 1, true)
      return duplicate(tonumber(string.sub(hit, 1, bar - 1)), string.sub(hit, bar + 1))
    end
  end
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
local op = ARGV[5]
local writes = {}
local deleted = {}
local incrValue = ''
local delta = 0
if op == 'set' then
  writes[1] = {ARGV[24], ARGV[25], tonumber(ARGV[26])}
elseif op == 'delete' then
  writes[1] = {ARGV[24], false, 0}
elseif op == 'incr' then
  local key = ARGV[24]
  delta = tonumber(ARGV[25])
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
  if n == math.floor(n) and math.abs(n) < 9007199254740992 then
    incrValue = string.format('%d', n)
  else
    incrValue = string.format('%.17g', n)
  end
  writes[1] = {key, incrValue, #key + #incrValue}
else
  local n = tonumber(ARGV[24])
  local i = 25
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
if ARGV[6] ~= '' and tonumber(ARGV[6]) ~= current + 1 then
  return refuse({'conflict', current, false, stateNow()})
end
local rebased = 0
local tf = tonumber(m[12]) or 0
if ARGV[7] ~= '' then
  local base = tonumber(ARGV[7])
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
local prevBytes = exists and tonumber(m[6]) or 0
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
if bytes > tonumber(ARGV[16]) then
  return refuse({'too_large', bytes})
end

-- Creating the session: within the owner's quota.
if not exists then
  local rule = ARGV[23]
  if rule == 'R' then return cmsgpack.pack({'needs_reservation'}) end
  if rule ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now)
    if redis.call('ZCARD', KEYS[8]) >= tonumber(rule) then return cmsgpack.pack({'quota_exceeded'}) end
  end
end

-- All checks passed: write.
local version = current + 1
local vs = tostring(version)
local exp = exists and tonumber(m[9]) or 0
local refreshed = hf_due(exp, now, ttl)
if refreshed then exp = refreshed end
local createdKeys = {}

local sets, dels = {}, {}
for j = 1, #writes do
  local w = writes[j]
  if w[2] then
    sets[#sets + 1] = w[1]
    sets[#sets + 1] = vs .. '|' .. w[3] .. '|' .. w[2]
  end
end
if op == 'replace' then
  if prevBytes > 0 then redis.call('DEL', stateKey) end
else
  for j = 1, #gone do dels[#dels + 1] = gone[j] end
end
if #dels > 0 then hf_chunked('HDEL', stateKey, dels, 200) end
if #sets > 0 then
  hf_chunked('HSET', stateKey, sets, 200)
  if prevBytes == 0 or op == 'replace' then createdKeys[#createdKeys + 1] = stateKey end
end

local tn = tonumber(m[13]) or 0
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
local frame = cmsgpack.pack({1, ARGV[1], version, ARGV[10], tonumber(ARGV[11]), dev, corr,
  op, key, value, delta, fields, deleted, now, epoch})

-- Log id = version, so resume is XRANGE (last+1)-0 + with no bookkeeping.
local lf = tonumber(m[10]) or 0
local lb = tonumber(m[11]) or 0
if lf == 0 then
  redis.call('DEL', logKey) -- left over from an earlier incarnation, if anything
  lf, lb = version, 0
  createdKeys[#createdKeys + 1] = logKey
end
local added = redis.pcall('XADD', logKey, vs .. '-0', 'f', frame)
if type(added) == 'table' and added.err then
  redis.call('DEL', logKey)
  redis.call('XADD', logKey, vs .. '-0', 'f', frame)
  lf, lb = version, 0
  createdKeys[#createdKeys + 1] = logKey
end
lb = lb + #frame
-- Trim by entries (in batches of an eighth, so not on every write) and by bytes; keep the newest.
local logLength, logMax = tonumber(ARGV[17]), tonumber(ARGV[18])
local count = version - lf + 1
if count > logLength + math.max(1, math.floor(logLength / 8)) or lb > logMax then
  local first, freed, cursor = lf, 0, '-'
  local done = false
  while not done do
    local batch = redis.call('XRANGE', logKey, cursor, '+', 'COUNT', 32)
    if #batch == 0 then break end
    for j = 1, #batch do
      local left = version - first + 1
      if left <= 1 or (left <= logLength and lb - freed <= logMax) then
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

local mset = {'v', version, 'updated', now, 'bytes', bytes, 'lf', lf, 'lb', lb}
if not exists then
  for _, x in ipairs({'uid', owner, 'epoch', epoch, 'created', now}) do mset[#mset + 1] = x end
end
if owner == ARGV[4] then
  mset[#mset + 1] = 'recent'
  mset[#mset + 1] = now
end
if dev ~= '' then
  mset[#mset + 1] = 'dev'
  mset[#mset + 1] = dev
end
if ARGV[9] ~= '' then
  mset[#mset + 1] = 'app'
  mset[#mset + 1] = ARGV[9]
end
if useMid then
  mset[#mset + 1] = 'm:' .. dev
  mset[#mset + 1] = mid
end
if refreshed then
  mset[#mset + 1] = 'exp'
  mset[#mset + 1] = exp
end
if #gone > 0 then
  for _, x in ipairs({'tf', tf, 'tn', tn}) do mset[#mset + 1] = x end
end

-- Dedupe records: two generations of at most IDEM_MAX each, the older dropped when a generation is
-- full or a window old, so a session keeps at most 2 x IDEM_MAX of them.
if useIdem then
  local n, since = tonumber(m[14]) or 0, tonumber(m[15]) or 0
  if n >= IDEM_MAX or now - since >= tonumber(ARGV[21]) then
    if n > 0 then redis.pcall('RENAME', KEYS[6], KEYS[7]) end
    n, since = 0, now
  end
  redis.call('HSET', KEYS[6], idemField, vs .. '|' .. incrValue)
  if n == 0 then createdKeys[#createdKeys + 1] = KEYS[6] end
  for _, x in ipairs({'in', n + 1, 'it', since}) do mset[#mset + 1] = x end
end
redis.call('HSET', meta, unpack(mset))

if refreshed then
  hf_refresh(exp)
else
  for j = 1, #createdKeys do redis.call('PEXPIREAT', createdKeys[j], exp) end
end
if not exists and KEYS[8] then
  redis.call('ZADD', KEYS[8], exp, ARGV[1])
  redis.call('PEXPIREAT', KEYS[8], exp)
  redis.call('ZADD', KEYS[9], exp, ARGV[1])
end

redis.call(ARGV[20], ARGV[19], frame)

return cmsgpack.pack({'ok', version, current == 0 and 1 or 0, rebased, incrValue, 0, now, createdAt,
  dev ~= '' and dev or (m[7] or ''), ARGV[9] ~= '' and ARGV[9] or (m[8] or ''),
  op == 'merge' and fields or {}, owner, epoch, exp, refreshed and 1 or 0})
