import { ErrorCode } from '@harmonyflow/protocol';
import type { SessionStore } from '../store/types';
import { TokenError, type TokenService } from './tokens';

export interface TokenPair {
  access_token: string;
  refresh_token: string;
  token_type: 'Bearer';
  expires_in: number;
}

/**
 * Rotates a refresh token: the presented `jti` is recorded as used in the shared store (so every
 * node agrees), and a new pair of the same family is returned. Presenting a used token again
 * revokes the family: whoever holds any token of it must log in again.
 */
export async function rotateRefreshToken(
  tokens: TokenService, store: SessionStore, refreshToken: string, accessTtlSeconds: number, refreshTtlSeconds: number,
): Promise<TokenPair> {
  const { principal, jti, family } = await tokens.verifyRefresh(refreshToken);
  const outcome = await store.useRefreshToken(jti, family, refreshTtlSeconds);
  if (outcome === 'reused') throw new TokenError(ErrorCode.INVALID_TOKEN, 'refresh token reused; its family is revoked');
  if (outcome === 'revoked') throw new TokenError(ErrorCode.INVALID_TOKEN, 'refresh token family revoked');
  const [access, refresh] = await Promise.all([
    tokens.signAccess(principal.userId, principal.role),
    tokens.signRefresh(principal.userId, principal.role, family),
  ]);
  return { access_token: access, refresh_token: refresh, token_type: 'Bearer', expires_in: accessTtlSeconds };
}
