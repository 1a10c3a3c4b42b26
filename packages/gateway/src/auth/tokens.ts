import { createSecretKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey, type JWTVerifyOptions } from 'jose';
import { ErrorCode } from '@harmonyflow/protocol';
import type { JwtConfig } from '../config';
import { AppError } from '../errors';
import { verifyHs256 } from './hs256';

export type Role = 'user' | 'admin';

/** Who a request or connection acts as. */
export interface Principal {
  readonly userId: string;
  readonly role: Role;
  /** Expiry, Unix ms. */
  readonly expiresAt: number;
}

export class TokenError extends AppError {
  constructor(code: typeof ErrorCode.TOKEN_EXPIRED | typeof ErrorCode.INVALID_TOKEN, message: string) {
    super(code, 401, message);
  }
}

const ROLES = new Set<Role>(['user', 'admin']);

/**
 * Mints and verifies tokens. Access tokens are HS256 with JWT_SECRET (or RS256/ES256 from an
 * identity provider's JWKS when configured); refresh tokens are HS256 with JWT_REFRESH_SECRET and
 * carry `jti` plus `fam` (the rotation family, for reuse detection).
 */
export class TokenService {
  private readonly jwks: JWTVerifyGetKey | null;
  /** Key objects made once: given raw bytes, jose builds one per call (a visible cost per connect). */
  private readonly accessKey: KeyObject;
  private readonly refreshKey: KeyObject;

  constructor(private readonly cfg: JwtConfig) {
    this.jwks = cfg.jwksUrl ? createRemoteJWKSet(new URL(cfg.jwksUrl)) : null;
    this.accessKey = createSecretKey(cfg.secret);
    this.refreshKey = createSecretKey(cfg.refreshSecret);
  }

  async signAccess(userId: string, role: Role, ttlSeconds = this.cfg.accessTtlSeconds): Promise<string> {
    return new SignJWT({ role, typ: 'access' })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(userId)
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSeconds)
      .sign(this.accessKey);
  }

  async signRefresh(userId: string, role: Role, family: string = randomUUID()): Promise<string> {
    return new SignJWT({ role, typ: 'refresh', fam: family })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(userId)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime(Math.floor(Date.now() / 1000) + this.cfg.refreshTtlSeconds)
      .sign(this.refreshKey);
  }

  async verifyAccess(token: string): Promise<Principal> {
    const payload = await this.verify(token, 'access');
    return principalOf(payload);
  }

  /** Verifies a refresh token's signature and shape; rotation bookkeeping is the caller's. */
  async verifyRefresh(token: string): Promise<{ principal: Principal; jti: string; family: string }> {
    const payload = await this.verify(token, 'refresh');
    if (typeof payload.jti !== 'string' || payload.jti.length === 0) throw new TokenError(ErrorCode.INVALID_TOKEN, 'refresh token has no jti');
    const family = typeof payload.fam === 'string' && payload.fam ? payload.fam : payload.jti;
    return { principal: principalOf(payload), jti: payload.jti, family };
  }

  private async verify(token: string, typ: 'access' | 'refresh'): Promise<JWTPayload> {
    if (typeof token !== 'string' || token.length === 0 || token.length > 8192) throw new TokenError(ErrorCode.INVALID_TOKEN, 'missing token');
    const payload = typ === 'access' ? await this.accessPayload(token) : await joseVerify(token, this.refreshKey, { ...REQUIRED_CLAIMS, algorithms: ['HS256'] });
    // Identity-provider tokens may carry no `typ`; ours always do, and must match.
    if (payload.typ !== undefined && payload.typ !== typ) throw new TokenError(ErrorCode.INVALID_TOKEN, `not an ${typ} token`);
    if (typ === 'refresh' && payload.typ !== 'refresh') throw new TokenError(ErrorCode.INVALID_TOKEN, 'not a refresh token');
    return payload;
  }

  /**
   * Our own access tokens synchronously (auth/hs256.ts: the cost of every AUTH). Only a signature
   * or algorithm that is not ours falls through to the identity provider's keys, when configured.
   */
  private accessPayload(token: string): JWTPayload | Promise<JWTPayload> {
    const own = verifyHs256(token, this.accessKey, Math.floor(Date.now() / 1000));
    if (own === 'expired') throw new TokenError(ErrorCode.TOKEN_EXPIRED, 'token expired');
    if (own === 'claims' || (own === 'signature' && !this.jwks)) throw new TokenError(ErrorCode.INVALID_TOKEN, 'invalid token');
    if (own !== 'signature') return own;
    // JWT_ISSUER/JWT_AUDIENCE constrain the identity provider's tokens; ours carry no iss/aud.
    return joseVerify(token, this.jwks!, { ...REQUIRED_CLAIMS, issuer: this.cfg.issuer ?? undefined, audience: this.cfg.audience ?? undefined, algorithms: ['RS256', 'ES256'] });
  }
}

/** Claims every token must carry. */
const REQUIRED_CLAIMS = { requiredClaims: ['exp', 'sub'] };

/** jose's verification, its failures as TokenErrors. */
async function joseVerify(token: string, key: KeyObject | JWTVerifyGetKey, opts: JWTVerifyOptions): Promise<JWTPayload> {
  try {
    // jose's overloads take one kind of key each; both kinds are verified the same way.
    return (await jwtVerify(token, key as KeyObject, opts)).payload;
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) throw new TokenError(ErrorCode.TOKEN_EXPIRED, 'token expired');
    throw new TokenError(ErrorCode.INVALID_TOKEN, 'invalid token');
  }
}

function principalOf(p: JWTPayload): Principal {
  const sub = p.sub;
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256) throw new TokenError(ErrorCode.INVALID_TOKEN, 'token has no valid sub');
  const role = (p.role ?? 'user') as Role;
  if (!ROLES.has(role)) throw new TokenError(ErrorCode.INVALID_TOKEN, 'unknown role');
  return { userId: sub, role, expiresAt: (p.exp as number) * 1000 };
}

/** A session belongs to its first writer; admins act on every session. */
export function canAccess(principal: Principal, ownerId: string): boolean {
  return principal.role === 'admin' || principal.userId === ownerId;
}
