-- Records use of refresh token jti; a second use revokes its family (reuse detection).
-- KEYS: 1 used marker of this jti, 2 family revocation marker. ARGV: 1 ttl(ms).
if redis.call('EXISTS', KEYS[2]) == 1 then return 'revoked' end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 'ok' end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
return 'reused'
