-- Logged frames after version ARGV[1] of epoch ARGV[2] ('' = whichever is current), with the
-- session's epoch first; false when the session is gone, the epoch differs or the log no longer
-- covers the gap. KEYS: 1 meta, 2 log.
local m = redis.call('HMGET', KEYS[1], 'v', 'epoch', 'lf')
if not m[2] then return false end
if ARGV[2] ~= '' and ARGV[2] ~= m[2] then return false end
local current = tonumber(m[1]) or 0
local after = tonumber(ARGV[1])
if after == current then return {m[2]} end
local lf = tonumber(m[3]) or 0
if after > current or after < 0 or lf == 0 or after + 1 < lf then return false end
local entries = redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+')
if #entries == 0 or entries[1][1] ~= (after + 1) .. '-0' then return false end
local out = {m[2]}
for j = 1, #entries do out[j + 1] = entries[j][2][2] end
return out
