-- One atomic state change of one session (see SessionStore.mutate and stateOps.ts, which this
-- mirrors). Redis does not roll a script back, so every check runs before the first write.
--
-- KEYS: 1 meta, 2 state, 3 per-key versions, 4 update log, 5 devices, 6 idempotency key,
--       [7 user index, 8 global index: only when not on Redis Cluster, where they live in other slots]
-- ARGV: 1 sessionId, 2 actor, 3 admin(0/1), 4 owner, 5 op, 6 expectVersion|'', 7 baseVersion|'',
--       8 deviceId, 9 appVersion, 10 originNode, 11 originConn, 12 correlationId, 13 now(ms),
--       14 ttl(ms), 15 maxStateBytes, 16 logLength, 17 channel, 18 PUBLISH|SPUBLISH, 19 idemTtl(ms),
--       20.. op arguments:
--         set: key, stored, size | delete: key | incr: key, delta
--         patch: nChanges, (key, stored, size)*, deleted keys* | merge: nChanges, (key, stored, size)*
--         replace: nKeys, (key, stored, size)*
-- Returns one cmsgpack string: {'ok', version, created, rebased, valueText, duplicate, updatedAt,
--   createdAt, deviceId, appVersion, stateFlat (merge only), owner}
--   | {'conflict', current, conflictingKeys|false, stateFlat} | {'not_found'} | {'not_a_number', key}
--   | {'too_large', bytes}

local meta, stateKey, kvKey, logKey = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local useIdem = ARGV[12] ~= '' and ARGV[8] ~= ''

if useIdem then
  local hit = redis.call('GET', KEYS[6])
  if hit then
    local r = cmsgpack.unpack(hit)
    r[6] = 1
    return cmsgpack.pack(r)
  end
end

local m = redis.call('HMGET', meta, 'uid', 'v', 'bytes', 'created', 'dev', 'app')
local exists = m[1] ~= false
if exists and m[1] ~= ARGV[2] and ARGV[3] ~= '1' then
  return cmsgpack.pack({'not_found'})
end
local current = exists and tonumber(m[2]) or 0
local bytes = exists and tonumber(m[3]) or 0
local version = current + 1
local now = tonumber(ARGV[13])
local op = ARGV[5]

-- Parse the op's arguments into (key, stored|false, size) writes.
local writes = {}
local touched = {}
local deleted = {}
local incrValue = ''
local delta = 0
local i = 20
if op == 'set' then
  writes[1] = {ARGV[20], ARGV[21], tonumber(ARGV[22])}
elseif op == 'delete' then
  writes[1] = {ARGV[20], false, 0}
elseif op == 'incr' then
  local key = ARGV[20]
  delta = tonumber(ARGV[21])
  local old = redis.call('HGET', stateKey, key)
  local base = 0
  if old then
    base = tonumber(old)
    -- tonumber also accepts hex and padded text that JSON never produces; only plain JSON numbers count.
    if base == nil or not string.match(old, '^-?%d+%.?%d*[eE]?[-+]?%d*$') then
      return cmsgpack.pack({'not_a_number', key})
    end
  end
  local n = base + delta
  if n ~= n or n == math.huge or n == -math.huge then
    return cmsgpack.pack({'not_a_number', key})
  end
  if n == math.floor(n) and math.abs(n) < 9007199254740992 then
    incrValue = string.format('%d', n)
  else
    incrValue = string.format('%.17g', n)
  end
  writes[1] = {key, incrValue, #key + #incrValue}
elseif op == 'patch' or op == 'merge' or op == 'replace' then
  local n = tonumber(ARGV[20])
  i = 21
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
for j = 1, #writes do touched[j] = writes[j][1] end

-- Version check.
if ARGV[6] ~= '' and tonumber(ARGV[6]) ~= current + 1 then
  return cmsgpack.pack({'conflict', current, false, redis.call('HGETALL', stateKey)})
end
local rebased = 0
if ARGV[7] ~= '' then
  local base = tonumber(ARGV[7])
  if base > current then
    return cmsgpack.pack({'conflict', current, {}, redis.call('HGETALL', stateKey)})
  elseif base < current then
    local conflicting, seen = {}, {}
    for j = 1, #touched do
        local kv = redis.call('HGET', kvKey, touched[j])
        local v = kv and tonumber(string.match(kv, '^(%d+)')) or 0
        if v > base and not seen[touched[j]] then
          seen[touched[j]] = true
          conflicting[#conflicting + 1] = touched[j]
        end
    end
    if #conflicting > 0 then
      return cmsgpack.pack({'conflict', current, conflicting, redis.call('HGETALL', stateKey)})
    end
    rebased = 1
  end
end

-- Size accounting: per-key versions are "version|size" so a delete or overwrite can subtract.
local removed = {}
if op == 'replace' then
  bytes = 0
  local newKeys = {}
  for j = 1, #writes do
    bytes = bytes + writes[j][3]
    newKeys[writes[j][1]] = true
  end
  local old = redis.call('HKEYS', stateKey)
  for j = 1, #old do
    if not newKeys[old[j]] then removed[#removed + 1] = old[j] end
  end
else
  -- HGET per key, not HMGET: unpack() of thousands of keys overflows Lua's C stack.
  local counted = {}
  for j = 1, #writes do
    local k = writes[j][1]
    local oldSize = counted[k]
    if oldSize == nil then
      local kv = redis.call('HGET', kvKey, k)
      oldSize = kv and tonumber(string.match(kv, '|(%d+)$')) or 0
    end
    bytes = bytes - oldSize + writes[j][3]
    counted[k] = writes[j][3]
  end
end
if bytes > tonumber(ARGV[15]) then
  return cmsgpack.pack({'too_large', bytes})
end

-- All checks passed: write.
local vs = tostring(version)
if op == 'replace' then
  redis.call('DEL', stateKey, kvKey)
  for j = 1, #removed do redis.call('HSET', kvKey, removed[j], vs .. '|0') end
end
for j = 1, #writes do
  local w = writes[j]
  if w[2] then
    redis.call('HSET', stateKey, w[1], w[2])
  else
    redis.call('HDEL', stateKey, w[1])
  end
  redis.call('HSET', kvKey, w[1], vs .. '|' .. w[3])
end
if exists then
  redis.call('HSET', meta, 'v', version, 'updated', now, 'bytes', bytes)
else
  redis.call('HSET', meta, 'uid', ARGV[4], 'v', version, 'created', now, 'updated', now, 'bytes', bytes)
end
if ARGV[8] ~= '' then redis.call('HSET', meta, 'dev', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HSET', meta, 'app', ARGV[9]) end

-- The frame peers and resuming clients see: the layout of protocol/src/bus.ts UpdateFrame.
local fields = {}
local key, value = '', ''
if op == 'set' or op == 'delete' or op == 'incr' then
  key = writes[1][1]
  value = writes[1][2] or ''
elseif op == 'patch' then
  for j = 1, #writes do
    if writes[j][2] then
      fields[#fields + 1] = writes[j][1]
      fields[#fields + 1] = writes[j][2]
    end
  end
else
  fields = redis.call('HGETALL', stateKey)
end
local frame = cmsgpack.pack({1, ARGV[1], version, ARGV[10], tonumber(ARGV[11]), ARGV[8], ARGV[12],
  op, key, value, delta, fields, deleted, now})

-- Log id = version, so resume is XRANGE (last+1)-0 + with no bookkeeping. A log left over from an
-- expired incarnation of this session would reject the id: drop it and start again.
local ok = redis.pcall('XADD', logKey, 'MAXLEN', '~', ARGV[16], vs .. '-0', 'f', frame)
if type(ok) == 'table' and ok.err then
  redis.call('DEL', logKey)
  redis.call('XADD', logKey, 'MAXLEN', '~', ARGV[16], vs .. '-0', 'f', frame)
end

local ttl = ARGV[14]
redis.call('PEXPIRE', meta, ttl)
redis.call('PEXPIRE', stateKey, ttl)
redis.call('PEXPIRE', kvKey, ttl)
redis.call('PEXPIRE', logKey, ttl)
redis.call('PEXPIRE', KEYS[5], ttl)
if KEYS[7] then
  -- KEYS[7] is ARGV[4]'s index: only the owner's own writes move a session to its front.
  if not exists or m[1] == ARGV[4] then
    redis.call('ZADD', KEYS[7], now, ARGV[1])
    redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - tonumber(ttl))
    redis.call('PEXPIRE', KEYS[7], ttl)
  end
  redis.call('ZADD', KEYS[8], now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', now - tonumber(ttl))
end

redis.call(ARGV[18], ARGV[17], frame)

local created = exists and tonumber(m[4]) or now
local dev = ARGV[8] ~= '' and ARGV[8] or (m[5] or '')
local app = ARGV[9] ~= '' and ARGV[9] or (m[6] or '')
local result = cmsgpack.pack({'ok', version, exists and (current == 0 and 1 or 0) or 1, rebased, incrValue, 0, now,
  created, dev, app, op == 'merge' and fields or {}, exists and m[1] or ARGV[4]})
if useIdem then redis.call('SET', KEYS[6], result, 'PX', ARGV[19]) end
return result
