import { randomBytes } from 'node:crypto';
import type { TemplatedApp } from 'uWebSockets.js';
import { BusKind, ErrorCode, type ControlFrame } from '@harmonyflow/protocol';
import { z } from 'zod';
import { AppError, badRequest, notFound, quotaExceeded } from '../errors';
import type { PresenceRegistry } from '../presence/types';
import type { SessionService } from '../sessions';
import { route, type HttpDeps } from './uws';
import { deviceIdField, parseJson, requireSessionId, validate } from './validation';

export interface DeviceRouteDeps {
  readonly sessions: SessionService;
  readonly presence: PresenceRegistry;
  readonly handoffTtlMs: number;
  publish(sessionId: string, kind: ControlFrame['kind'], body: Record<string, unknown>): Promise<void>;
}

/** Any device ids (SPEC §8): the target is usually one that never joined the session yet. */
const handoffBody = z.object({ source_device: deviceIdField, target_device: deviceIdField });

/** Devices, handoff and kick routes under /session/:uuid. */
export function registerDeviceRoutes(app: TemplatedApp, deps: HttpDeps, d: DeviceRouteDeps): void {
  route(app, deps, 'get', '/session/:uuid/devices', { name: '/session/:uuid/devices', auth: 'user' }, async (ctx) => {
    const id = requireSessionId(ctx.params[0]);
    await d.sessions.authorize(id, ctx.principal!);
    return { status: 200, body: { session_id: id, devices: await d.presence.list(id, Date.now()) } };
  });

  route(app, deps, 'post', '/session/:uuid/handoff', { name: '/session/:uuid/handoff', auth: 'user', body: true }, async (ctx) => {
    const id = requireSessionId(ctx.params[0]);
    const b = validate(handoffBody, parseJson(ctx.body));
    if (b.source_device === b.target_device) throw badRequest(ErrorCode.VALIDATION_FAILED, 'source and target must differ', { details: [{ path: 'target_device', message: 'equals source_device' }] });
    const snap = await d.sessions.read(id, ctx.principal!);
    const now = Date.now();
    // 24 random bytes = 192 bits, base64url: unguessable, single use, short-lived.
    const token = randomBytes(24).toString('base64url');
    const expiresAt = now + d.handoffTtlMs;
    const stored = await d.sessions.store.createHandoff({
      token, sessionId: id, sourceDevice: b.source_device, targetDevice: b.target_device, version: snap.version, epoch: snap.epoch,
      state: snap.state, createdAt: now, expiresAt,
    });
    if (stored === 'quota_exceeded') throw quotaExceeded('too many live handoff tokens for this session');
    const expires = new Date(expiresAt).toISOString();
    // Whoever is connected is told; a publish failure is 503 (the token exists: a retry makes another).
    await d.publish(id, BusKind.HANDOFF_REQUESTED, { token, source_device: b.source_device, target_device: b.target_device, expires_at: expires });
    return { status: 201, body: { token, expires_at: expires, source_device: b.source_device, target_device: b.target_device, version: snap.version, epoch: snap.epoch } };
  });

  route(app, deps, 'get', '/session/:uuid/handoff/:token', { name: '/session/:uuid/handoff/:token', auth: 'user' }, async (ctx) => {
    const id = requireSessionId(ctx.params[0]);
    await d.sessions.authorize(id, ctx.principal!);
    const token = ctx.params[1];
    if (!/^[A-Za-z0-9_-]{16,128}$/.test(token)) throw notFound('unknown or expired handoff token');
    const r = await d.sessions.store.consumeHandoff(id, token);
    if (r.status === 'not_found') throw notFound('unknown or expired handoff token');
    if (r.status === 'used') throw new AppError(ErrorCode.HANDOFF_TOKEN_USED, 410, 'handoff token already used');
    const h = r.handoff;
    await d.publish(id, BusKind.HANDOFF_COMPLETED, { source_device: h.sourceDevice, target_device: h.targetDevice });
    return { status: 200, body: { valid: true, session_id: id, state_data: h.state, version: h.version, epoch: h.epoch, source_device: h.sourceDevice, target_device: h.targetDevice } };
  });

  route(app, deps, 'del', '/session/:uuid/device/:device_id', { name: '/session/:uuid/device/:device_id', auth: 'user' }, async (ctx) => {
    const id = requireSessionId(ctx.params[0]);
    await d.sessions.authorize(id, ctx.principal!);
    const deviceId = ctx.params[1];
    if (!(await d.presence.remove(id, deviceId))) throw notFound('unknown device');
    await d.publish(id, BusKind.KICK, { device_id: deviceId });
    await d.publish(id, BusKind.DEVICE_LEFT, { device_id: deviceId, reason: 'kicked' });
    return { status: 204 };
  });
}
