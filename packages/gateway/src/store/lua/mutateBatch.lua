-- Applies the state changes of one event-loop turn, each as mutate.lua's hf_mutate, in order: one
-- call instead of one per change (Redis pays a fixed cost per call). Each change is isolated: a
-- failure of one is its own reply and does not stop the others. Registered as a Redis Function
-- (store/redisLibrary.ts): FCALL hf_mutate_batch_<hash> numKeys KEYS… ARGV…
-- KEYS: 5 per change, in KeySpace.sessionKeyList order, change after change.
-- ARGV: for each change, its argument count, then its arguments (mutate.lua).
-- Returns one reply per change: mutate.lua's cmsgpack reply, or cmsgpack {'error', message}.
local function hf_mutate_batch(KEYS, ARGV)
if not rcall then hf_bind() end
local out = {}
local a = 1
local i = 0
local nargs = #ARGV
while a <= nargs do
  local n = to_number(ARGV[a])
  local ok, reply = pcall(hf_mutate, KEYS, ARGV, i * 5, a, n)
  i = i + 1
  if ok then
    out[i] = reply
  else
    out[i] = cmsgpack.pack({'error', type(reply) == 'table' and (reply.err or 'error') or tostring(reply)})
  end
  a = a + n + 1
end
return out
end
