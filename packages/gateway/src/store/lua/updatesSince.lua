-- Logged frames after version ARGV[1] of epoch ARGV[2] ('' = whichever is current), with the
-- session's epoch first; false when the session is gone, the epoch differs or the log no longer
-- covers the gap. KEYS: 1 meta, 2 log. Uses the header layout of lib.lua.
local raw = redis.call('HGET', KEYS[1], 'h')
if not raw then return false end
local h = cmsgpack.unpack(raw)
local epoch = h[H_EPOCH]
if ARGV[2] ~= '' and ARGV[2] ~= epoch then return false end
local current = h[H_V]
local after = tonumber(ARGV[1])
if after == current then return {epoch} end
local lf = h[H_LF]
if after > current or after < 0 or lf == 0 or after + 1 < lf then return false end
local entries = redis.call('XRANGE', KEYS[2], (after + 1) .. '-0', '+')
if #entries == 0 or entries[1][1] ~= (after + 1) .. '-0' then return false end
local out = {epoch}
for j = 1, #entries do out[j + 1] = entries[j][2][2] end
return out
