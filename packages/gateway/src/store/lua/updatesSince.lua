-- Logged frames after version ARGV[1], or false when the log no longer covers the gap.
-- KEYS: 1 meta, 2 log. ARGV: 1 afterVersion, 2 max gap.
local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
local after = tonumber(ARGV[1])
if after == current then return {} end
if after > current or after < 0 or current - after > tonumber(ARGV[2]) then return false end
local entries = redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+')
if #entries == 0 or entries[1][1] ~= (after + 1) .. '-0' then return false end
local out = {}
for j = 1, #entries do out[j] = entries[j][2][2] end
return out
