import { randomUUID } from 'node:crypto';
import {
  CloseCode, ErrorCode, MessageType, isUuid, isValidId, MAX_ID_LENGTH, type DeviceInfo,
} from '@harmonyflow/protocol';
import { canAccess, type Principal } from '../../auth/tokens';
import { AppError } from '../../errors';
import { connOf, type Conn, type QueryAuth, type WS } from '../conn';
import type { WsContext } from '../context';
import { errorFromThrown } from '../errors';
import { sendEnv } from '../io';
import { TOPIC } from '../topics';

/**
 * AUTH: the first frame, the `?token=` query, or a token refresh on a live connection (SPEC §3,
 * §5, §9). Frames that arrive while the first one is in flight are held and processed once it
 * settles; during a refresh they are processed as they come.
 */
export async function authenticate(ctx: WsContext, ws: WS, p: QueryAuth, correlationId: string | undefined): Promise<void> {
  const c = connOf(ws);
  if (c.authInFlight) {
    ctx.io.error(ws, ErrorCode.INVALID_MESSAGE, 'AUTH already in progress', correlationId);
    return;
  }
  if (!p || typeof p !== 'object' || typeof p.token !== 'string') {
    fail(ctx, ws, correlationId, ErrorCode.INVALID_TOKEN, 'AUTH needs a token');
    return;
  }
  c.authInFlight = true;
  c.holding = !c.authed;
  try {
    let who: Principal;
    try {
      who = await ctx.tokens.verifyAccess(p.token);
    } catch (err) {
      fail(ctx, ws, correlationId, err instanceof AppError ? err.code : ErrorCode.INVALID_TOKEN, 'invalid or expired token');
      return;
    }
    if (c.closed) return;
    if (c.authed) reauthenticate(ctx, ws, who, correlationId);
    else await join(ctx, ws, who, p, correlationId);
  } finally {
    c.authInFlight = false;
    c.holding = false;
    const held = c.held;
    c.held = null;
    if (held && c.authed && !c.closed) for (const m of held) ctx.dispatch(ws, m.data, m.isBinary);
  }
}

function fail(ctx: WsContext, ws: WS, correlationId: string | undefined, code: string, message: string, close?: number): void {
  ctx.io.authFailure(ws, code, message, correlationId, close);
}

/** A new token on a live connection: it must still grant this session (else 4403). */
function reauthenticate(ctx: WsContext, ws: WS, who: Principal, correlationId: string | undefined): void {
  const c = connOf(ws);
  if (who.userId !== c.userId || !canAccess(who, c.ownerId)) {
    fail(ctx, ws, correlationId, ErrorCode.FORBIDDEN, 'this token does not grant the connection\'s session', CloseCode.FORBIDDEN);
    return;
  }
  c.tokenExpiresAt = who.expiresAt;
  c.expiryNotified = false;
  const admin = who.role === 'admin';
  if (admin !== c.admin) {
    if (admin) ws.subscribe(TOPIC.admins(c.binary));
    else ws.unsubscribe(TOPIC.admins(c.binary));
  }
  c.admin = admin;
  sendEnv(ws, {
    type: MessageType.AUTH_SUCCESS, session_id: c.sessionId, timestamp: Date.now(), correlation_id: correlationId,
    payload: successPayload(ctx, c, c.lastVersion, c.epoch, [], false, null),
  });
}

async function join(ctx: WsContext, ws: WS, who: Principal, p: QueryAuth, correlationId: string | undefined): Promise<void> {
  const c = connOf(ws);
  const deviceId = p.device_id;
  if (!isValidId(deviceId)) return fail(ctx, ws, correlationId, ErrorCode.INVALID_MESSAGE, `AUTH needs a device_id (1-${MAX_ID_LENGTH} characters)`);
  if (p.session_id !== undefined && p.session_id !== null && (typeof p.session_id !== 'string' || !isUuid(p.session_id))) {
    return fail(ctx, ws, correlationId, ErrorCode.INVALID_MESSAGE, 'session_id must be a UUID');
  }
  const lastVersion = typeof p.last_version === 'number' && Number.isSafeInteger(p.last_version) && p.last_version >= 0 ? p.last_version : null;
  // A last_epoch that cannot be an epoch is a mismatch (snapshot), never "any epoch" (replay).
  const lastEpoch = typeof p.last_epoch === 'string' && p.last_epoch.length > 0 ? (p.last_epoch.length <= 64 ? p.last_epoch : '!') : null;
  try {
    const sessionId = (p.session_id as string | undefined)?.toLowerCase() ?? (await ctx.sessions.store.latestSessionOf(who.userId)) ?? randomUUID();
    if (c.closed) return;
    c.userId = who.userId;
    c.admin = who.role === 'admin';
    c.sessionId = sessionId;
    c.deviceId = deviceId;
    c.tokenExpiresAt = who.expiresAt;
    // The session's bus subscription goes first: the snapshot read with the device's count must
    // not miss a change made meanwhile. The socket is not `authed` until the claim says the user
    // may join: until then nothing of the session reaches it (updates are held by the hub, control
    // frames and lists pass over sockets not authed). A refused AUTH still costs this node a
    // subscribe and an unsubscribe; failed AUTHs close their connection, which the connection
    // rate limit bounds.
    await ctx.hub.join(ws);
    if (c.closed) return; // close() already left the hub; nothing was counted yet
    // The claim and the count in one store call where it can (Redis); a device that resumes
    // nothing gets its snapshot from the same call.
    const joined = await ctx.tracker.claimAndJoin(c, who, {
      deviceId, deviceType: text(p.device_type), deviceName: text(p.device_name), osVersion: text(p.os_version), appVersion: text(p.app_version),
    }, Date.now(), lastVersion === null);
    if (joined.status === 'closed') return;
    if (joined.status !== 'ok') {
      if (!c.closed) unjoin(ctx, ws);
      if (joined.status === 'quota_exceeded') return fail(ctx, ws, correlationId, ErrorCode.QUOTA_EXCEEDED, 'too many live sessions for this user', CloseCode.RATE_LIMITED);
      return fail(ctx, ws, correlationId, ErrorCode.FORBIDDEN, 'session belongs to another user', CloseCode.FORBIDDEN);
    }
    const { claim: claimed, connected: { first, devices, snapshot } } = joined;
    c.ownerId = claimed.userId;
    c.authed = true;
    await ctx.hub.catchUp(ws, lastVersion, lastEpoch, ({ resumed, version, epoch }) => {
      // Synchronously before the snapshot or replay frames: AUTH_SUCCESS always comes first.
      sendEnv(ws, {
        type: MessageType.AUTH_SUCCESS, session_id: sessionId, user_id: who.userId, device_id: deviceId, timestamp: Date.now(),
        correlation_id: correlationId, payload: successPayload(ctx, c, version, epoch, devices, resumed, claimed.lastMutationId),
      });
      ws.subscribe(TOPIC.all(c.binary));
      if (c.admin) ws.subscribe(TOPIC.admins(c.binary));
    }, snapshot);
    if (!c.closed) ctx.connections.up(c);
    // Joined and told so: a failed announcement must not undo that, so it is only logged.
    if (first) ctx.tracker.joined(sessionId, deviceId, devices).catch((err) => ctx.log.warn({ err: (err as Error).message }, 'DEVICE_JOINED announcement failed'));
  } catch (err) {
    const { env, known } = errorFromThrown(err, correlationId);
    if (!known) ctx.log.error({ err }, 'AUTH failed unexpectedly');
    const code = (env.payload as { code: string }).code;
    // Partially joined: undo so the client can retry cleanly on a new connection.
    if (!c.closed) unjoin(ctx, ws);
    fail(ctx, ws, correlationId, code, code === ErrorCode.STORE_UNAVAILABLE ? 'session store unavailable, retry shortly' : 'authentication failed');
  }
}

/** Takes back a join that did not complete: the hub's membership, the count, if they were taken. */
function unjoin(ctx: WsContext, ws: WS): void {
  const c = connOf(ws);
  ctx.hub.leave(ws);
  ctx.tracker.leave(c, 'disconnected');
  c.authed = false;
}

function successPayload(
  ctx: WsContext, c: Conn, version: number, epoch: string, devices: DeviceInfo[], resumed: boolean, lastMutationId: number | null,
) {
  return {
    session_id: c.sessionId, user_id: c.userId, device_id: c.deviceId, node_id: ctx.config.nodeId, version, devices,
    heartbeat_interval_ms: ctx.config.heartbeatIntervalMs, resumed, epoch,
    ...(lastMutationId !== null ? { last_mutation_id: lastMutationId } : {}),
    max_message_bytes: ctx.config.maxMessageBytes,
  };
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' && v.length <= 256 ? v : undefined;
}
