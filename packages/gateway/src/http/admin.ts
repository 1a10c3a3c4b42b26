import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TemplatedApp } from 'uWebSockets.js';
import { BusKind, ErrorCode, type ControlFrame } from '@harmonyflow/protocol';
import { z } from 'zod';
import type { AdminMetrics } from '../admin';
import { badRequest } from '../errors';
import type { SessionStore } from '../store/types';
import { route, type HttpDeps } from './uws';
import { parseJson, sessionIdField, validate } from './validation';
import type { SessionSummary } from '../store/types';

function sessionItem(s: SessionSummary) {
  return {
    session_id: s.sessionId, user_id: s.userId, version: s.version, epoch: s.epoch,
    updated_at: new Date(s.updatedAt).toISOString(), expires_at: new Date(s.expiresAt).toISOString(),
  };
}

const broadcastBody = z.object({
  message: z.string().min(1).max(4096),
  type: z.string().min(1).max(64).default('notification'),
  session_id: sessionIdField.optional(),
});

function pageParams(q: URLSearchParams): { limit: number; cursor: string | null } {
  const raw = q.get('limit');
  const limit = raw === null || raw === '' ? 50 : Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
    throw badRequest(ErrorCode.VALIDATION_FAILED, 'limit must be 1-500', { details: [{ path: 'limit', message: 'must be a whole number 1-500' }] });
  }
  const cursor = q.get('cursor');
  return { limit, cursor: cursor ? cursor : null };
}

/** /admin/*: cluster metrics, paginated lists, broadcast, and the dashboard page. */
export function registerAdminRoutes(
  app: TemplatedApp, deps: HttpDeps, metrics: AdminMetrics, store: SessionStore,
  publishGlobal: (kind: ControlFrame['kind'], body: Record<string, unknown>) => Promise<void>,
): void {
  route(app, deps, 'get', '/admin/metrics/sessions', { name: '/admin/metrics/sessions', auth: 'admin' }, async () => ({ status: 200, body: await metrics.sessions() }));
  route(app, deps, 'get', '/admin/metrics/connections', { name: '/admin/metrics/connections', auth: 'admin' }, async () => ({ status: 200, body: await metrics.connections() }));
  route(app, deps, 'get', '/admin/metrics/snapshots', { name: '/admin/metrics/snapshots', auth: 'admin' }, async () => ({ status: 200, body: await metrics.snapshots() }));
  route(app, deps, 'get', '/admin/metrics/all', { name: '/admin/metrics/all', auth: 'admin' }, async () => ({ status: 200, body: await metrics.all() }));

  route(app, deps, 'get', '/admin/sessions', { name: '/admin/sessions', auth: 'admin' }, async (ctx) => {
    const { limit, cursor } = pageParams(ctx.query);
    const userId = ctx.query.get('user_id');
    if (userId !== null) {
      // A user's sessions are few (MAX_SESSIONS_PER_USER): one page, newest first.
      if (!userId || userId.length > 256) throw badRequest(ErrorCode.VALIDATION_FAILED, 'user_id must be 1-256 characters', { details: [{ path: 'user_id', message: 'must be 1-256 characters' }] });
      const mine = (await store.sessionsOfUser(userId)).sort((a, b) => b.updatedAt - a.updatedAt);
      return { status: 200, body: { items: mine.map(sessionItem), next_cursor: null } };
    }
    const page = await store.listSessions(limit, cursor);
    return { status: 200, body: { items: page.items.map(sessionItem), next_cursor: page.nextCursor } };
  });

  route(app, deps, 'get', '/admin/connections', { name: '/admin/connections', auth: 'admin' }, async (ctx) => {
    const { limit, cursor } = pageParams(ctx.query);
    return { status: 200, body: await metrics.connectionPage(limit, cursor) };
  });

  route(app, deps, 'post', '/admin/broadcast', { name: '/admin/broadcast', auth: 'admin', body: true }, async (ctx) => {
    const b = validate(broadcastBody, parseJson(ctx.body));
    await publishGlobal(BusKind.BROADCAST, { message: b.message, type: b.type, session_id: b.session_id });
    return { status: 202, body: { accepted: true, message: b.message, type: b.type, session_id: b.session_id ?? null } };
  });

  const pageFile = path.join(__dirname, 'admin-page', 'index.html');
  const page = existsSync(pageFile) ? readFileSync(pageFile) : Buffer.from('<!doctype html><title>HarmonyFlow admin</title><p>admin page asset missing from this build</p>');
  for (const p of ['/admin', '/admin/']) {
    route(app, deps, 'get', p, { name: '/admin/', auth: 'none' }, () => ({
      status: 200,
      contentType: 'text/html; charset=utf-8',
      headers: { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' },
      body: page,
    }));
  }
}
