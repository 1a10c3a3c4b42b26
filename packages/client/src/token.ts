/** Where an access token comes from: a fixed string, or a function asked for a fresh one. */
export type TokenSource = string | (() => string | Promise<string>);

interface JwtTimes {
  /** Expiry, Unix ms. */
  exp: number;
  /** Issue time, Unix ms, when the token carries `iat`. */
  iat?: number;
}

/**
 * Reads `exp` (and `iat`) from a JWT's payload without verifying anything: the client only needs
 * to know when to ask for a new token; the server does the verifying. Null for anything that is
 * not a JWT with a numeric `exp`.
 */
export function jwtTimes(token: string): JwtTimes | null {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeBase64(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const claims = JSON.parse(json) as { exp?: unknown; iat?: unknown };
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) return null;
    return { exp: claims.exp * 1000, iat: typeof claims.iat === 'number' ? claims.iat * 1000 : undefined };
  } catch {
    return null; // not base64 or not JSON: an opaque token, never refreshed proactively
  }
}

function decodeBase64(b64: string): string {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return new TextDecoder().decode(bytes);
}

/**
 * Milliseconds from `now` until the token should be replaced: `marginMs` before its expiry, but
 * never before half its lifetime has passed — otherwise a token shorter than the margin would be
 * refreshed again the moment it arrives. Null when the token has no readable `exp` or
 * `marginMs` ≤ 0 (proactive refresh disabled).
 *
 * @param receivedAt when the client got the token, standing in for a missing `iat`
 */
export function refreshDelayMs(token: string, now: number, marginMs: number, receivedAt = now): number | null {
  if (marginMs <= 0) return null;
  const t = jwtTimes(token);
  if (!t) return null;
  const lifetime = Math.max(0, t.exp - (t.iat ?? receivedAt));
  const at = t.exp - Math.min(marginMs, lifetime / 2);
  return Math.max(0, at - now);
}
