import type { TemplatedApp } from 'uWebSockets.js';
import { rotateRefreshToken } from '../auth/refresh';
import type { TokenService } from '../auth/tokens';
import type { JwtConfig } from '../config';
import type { SessionStore } from '../store/types';
import { route, type HttpDeps } from './uws';
import { parseJson, refreshBody, validate } from './validation';

/** POST /auth/refresh {refresh_token} → a new pair; the old refresh token is spent. */
export function registerAuthRoutes(app: TemplatedApp, deps: HttpDeps, tokens: TokenService, store: SessionStore, jwt: JwtConfig): void {
  route(app, deps, 'post', '/auth/refresh', { name: '/auth/refresh', auth: 'none', body: true }, async (ctx) => {
    const b = validate(refreshBody, parseJson(ctx.body));
    const pair = await rotateRefreshToken(tokens, store, b.refresh_token, jwt.accessTtlSeconds, jwt.refreshTtlSeconds);
    return { status: 200, body: pair };
  });
}
