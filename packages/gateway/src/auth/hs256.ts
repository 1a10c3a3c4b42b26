import { createHmac, timingSafeEqual, type KeyObject } from 'node:crypto';

/** Why a token was refused: `signature` covers every token this key did not sign as HS256. */
export type Hs256Refusal = 'signature' | 'expired' | 'claims';

/**
 * Verifies a compact HS256 JWT with this service's own secret, synchronously: the access token of
 * every AUTH. jose's general path (async, several promise hops, a validation layer per step) cost
 * about 50 µs a connect here, 15% of a connect's CPU; this is one HMAC and two JSON parses. jose
 * stays for signing, refresh tokens and identity-provider keys.
 *
 * The rules are jose's for these tokens (the differential test in auth.hs256.test.ts holds them
 * side by side), stricter where ours never need the room: the algorithm is fixed by the caller
 * and never read from the token to choose a key ('none', HS512, RS256 are all `signature`); any
 * `crit` header is refused (jose accepts only `b64`, which a JWT may not use anyway). Claims: a
 * JSON object with `exp` and `sub`; `iat`, `nbf` and `exp` numbers when present; `nbf` not in the
 * future, `exp` not reached (whole seconds, no leeway).
 */
export function verifyHs256(token: string, key: KeyObject, nowSeconds: number): Record<string, unknown> | Hs256Refusal {
  const dot1 = token.indexOf('.');
  const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1);
  if (dot1 <= 0 || dot2 < 0 || dot2 === dot1 + 1 || dot2 === token.length - 1 || token.indexOf('.', dot2 + 1) >= 0) return 'signature';
  const header = parseObject(token.slice(0, dot1));
  if (!header || header.alg !== 'HS256' || header.crit !== undefined) return 'signature';
  const given = Buffer.from(token.slice(dot2 + 1), 'base64url');
  const expected = createHmac('sha256', key).update(token.slice(0, dot2)).digest();
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return 'signature';
  // Signed by us from here on: what remains is what the claims say.
  const claims = parseObject(token.slice(dot1 + 1, dot2));
  if (!claims || !('exp' in claims) || !('sub' in claims)) return 'claims';
  for (const name of ['iat', 'nbf', 'exp']) {
    if (claims[name] !== undefined && typeof claims[name] !== 'number') return 'claims';
  }
  if (claims.nbf !== undefined && (claims.nbf as number) > nowSeconds) return 'claims';
  if ((claims.exp as number) <= nowSeconds) return 'expired';
  return claims;
}

/** A base64url segment holding a JSON object, or null. */
function parseObject(segment: string): Record<string, unknown> | null {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    return null;
  }
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}
