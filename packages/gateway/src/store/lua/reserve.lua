-- Reserves room for a new session in its owner's index (on Redis Cluster another slot than the
-- session's, so one script cannot check the quota and create it). The session is then created by
-- claim.lua or mutate.lua. (A device joining on one Redis skips this: claim.lua's rule 'Q'.)
-- KEYS: 1 user index. ARGV: 1 sessionId, 2 now, 3 max, 4 reservation deadline (ms).
-- Returns 2 reserved now, 1 already listed, 0 quota exceeded (lib.lua hf_reserve).
return hf_reserve(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
