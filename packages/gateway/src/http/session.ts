import type { TemplatedApp } from 'uWebSockets.js';
import { ErrorCode } from '@harmonyflow/protocol';
import { AppError, badRequest, forbidden } from '../errors';
import type { Principal } from '../auth/tokens';
import { snapshotView, type SessionService } from '../sessions';
import { RESOLUTION_STRATEGIES, type ResolutionStrategy } from '../store/stateOps';
import { route, type HttpDeps } from './uws';
import { incrementalBody, parseJson, requireSessionId, resolveBody, snapshotBody, validate } from './validation';

/** A body naming another user is 403 unless the caller is an admin, who may write for anyone. */
function ownerFor(who: Principal, bodyUserId: string | undefined): string {
  if (bodyUserId !== undefined && bodyUserId !== who.userId && who.role !== 'admin') {
    throw forbidden('user_id does not match the token');
  }
  return bodyUserId ?? who.userId;
}

function etagMatches(header: string, version: number): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((t) => t.trim().replace(/^W\//, '').replace(/"/g, '') === String(version));
}

/** POST /session/snapshot, GET /session/:uuid, POST /session/incremental, POST /session/conflict/resolve. */
export function registerSessionRoutes(app: TemplatedApp, deps: HttpDeps, sessions: SessionService): void {
  route(app, deps, 'post', '/session/snapshot', { name: '/session/snapshot', auth: 'user', body: true }, async (ctx) => {
    const who = ctx.principal!;
    const b = validate(snapshotBody, parseJson(ctx.body));
    const owner = ownerFor(who, b.user_id);
    const r = await sessions.mutate({
      sessionId: b.session_id, actor: { userId: who.userId, admin: who.role === 'admin' }, ownerId: owner,
      op: { op: 'replace', state: b.state_data }, expectVersion: b.version, deviceId: b.device_id, appVersion: b.app_version,
    }, 'http');
    return {
      status: r.created ? 201 : 200,
      headers: { etag: `"${r.version}"` },
      body: snapshotView({
        sessionId: b.session_id, userId: r.userId, version: r.version, epoch: r.epoch, state: b.state_data,
        deviceId: r.deviceId, appVersion: r.appVersion, createdAt: r.createdAt, updatedAt: r.updatedAt, expiresAt: r.expiresAt,
      }),
    };
  });

  route(app, deps, 'get', '/session/:uuid', { name: '/session/:uuid', auth: 'user', headers: ['if-none-match'] }, async (ctx) => {
    const id = requireSessionId(ctx.params[0]);
    const snap = await sessions.read(id, ctx.principal!);
    const etag = `"${snap.version}"`;
    if (etagMatches(ctx.headers['if-none-match'], snap.version)) return { status: 304, headers: { etag } };
    return { status: 200, headers: { etag }, body: snapshotView(snap) };
  });

  route(app, deps, 'post', '/session/incremental', { name: '/session/incremental', auth: 'user', body: true }, async (ctx) => {
    const who = ctx.principal!;
    const b = validate(incrementalBody, parseJson(ctx.body));
    const owner = ownerFor(who, b.user_id);
    const changes = b.changes ?? Object.create(null);
    const deleted = b.deleted_keys ?? [];
    const r = await sessions.mutate({
      sessionId: b.session_id, actor: { userId: who.userId, admin: who.role === 'admin' }, ownerId: owner,
      op: { op: 'patch', changes, deleted }, baseVersion: b.base_version, deviceId: b.device_id, appVersion: b.app_version,
    }, 'http');
    return {
      status: 200,
      headers: { etag: `"${r.version}"` },
      body: {
        session_id: b.session_id, version: r.version, rebased: r.rebased, base_version: b.base_version ?? null,
        applied_keys: Object.keys(changes), deleted_keys: deleted, updated_at: new Date(r.updatedAt).toISOString(),
      },
    };
  });

  route(app, deps, 'post', '/session/conflict/resolve', { name: '/session/conflict/resolve', auth: 'user', body: true }, async (ctx) => {
    const who = ctx.principal!;
    const b = validate(resolveBody, parseJson(ctx.body));
    if (!RESOLUTION_STRATEGIES.includes(b.resolution_strategy as ResolutionStrategy)) {
      throw badRequest(ErrorCode.VALIDATION_FAILED, `unknown resolution_strategy "${b.resolution_strategy}"`, {
        details: [{ path: 'resolution_strategy', message: `must be one of ${RESOLUTION_STRATEGIES.join(', ')}` }],
      });
    }
    const strategy = b.resolution_strategy as ResolutionStrategy;
    ownerFor(who, b.user_id);
    const actor = { userId: who.userId, admin: who.role === 'admin' };
    if (strategy === 'server_wins') {
      const snap = await sessions.read(b.session_id, who);
      return { status: 200, body: { session_id: b.session_id, state_data: snap.state, version: snap.version, strategy } };
    }
    // Resolution acts on an existing session only: there is nothing to be in conflict with otherwise.
    const head = await sessions.authorize(b.session_id, who);
    const r = await sessions.mutate({
      sessionId: b.session_id, actor, ownerId: head.userId, deviceId: b.device_id,
      op: strategy === 'client_wins' ? { op: 'replace', state: b.client_state } : { op: 'merge', changes: b.client_state },
    }, 'http');
    const state = strategy === 'client_wins' ? b.client_state : r.state;
    if (!state) throw new AppError(ErrorCode.INTERNAL, 500, 'merge result missing');
    return { status: 200, body: { session_id: b.session_id, state_data: state, version: r.version, strategy } };
  });
}
