import { randomUUID } from 'node:crypto';
import type { HttpRequest, HttpResponse, TemplatedApp, us_socket_context_t } from 'uWebSockets.js';
import {
  BusKind, CloseCode, ErrorCode, MessageType, codecFor, encodeControlFrame, negotiateSubprotocol, SUBPROTOCOL_PROTO,
  type ControlFrame, type DeviceInfo, type Envelope, type JsonValue,
} from '@harmonyflow/protocol';
import type { TokenService } from '../auth/tokens';
import type { Bus } from '../bus/types';
import type { Config } from '../config';
import { AppError } from '../errors';
import { MAX_STATE_DEPTH, isUuid, jsonDepth } from '../http/validation';
import { send, type Hub } from '../hub';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';
import type { PresenceRegistry } from '../presence/types';
import type { SessionService } from '../sessions';
import type { StateOp } from '../store/types';
import { connOf, newConn, type Conn, type QueryAuth, type Slot, type WS } from './conn';
import { errorEnvelope, errorFromThrown } from './errors';

export interface WsDeps {
  readonly config: Config;
  readonly tokens: TokenService;
  readonly sessions: SessionService;
  readonly presence: PresenceRegistry;
  readonly hub: Hub;
  readonly bus: Bus;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly inflight: { count: number };
}

/** Global uWS topics: broadcasts to everyone and admin updates, one topic per encoding. */
export const TOPIC = {
  all: (binary: boolean) => (binary ? 'all/p' : 'all/j'),
  admins: (binary: boolean) => (binary ? 'admins/p' : 'admins/j'),
};

const STRIKES_BEFORE_CLOSE = 10;

/**
 * The `/ws` endpoint: upgrade (subprotocol, `?token=`), the AUTH lifecycle, one handler per
 * message type, limits (size, rate, abuse), presence and the node-wide sweep for deadlines.
 */
export class WsGateway {
  readonly sockets = new Set<WS>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private touchTimer: NodeJS.Timeout | null = null;
  private draining = false;

  constructor(private readonly app: TemplatedApp, private readonly d: WsDeps) {
    const maxPayload = Math.max(4 * d.config.maxMessageBytes, 1024 * 1024);
    app.ws<Slot>('/ws', {
      // Last-resort cap only: our own limit below answers with ERROR + 1009 instead of uWS's 1006.
      maxPayloadLength: maxPayload,
      idleTimeout: Math.max(8, Math.min(960, Math.ceil((d.config.heartbeatIntervalMs * 2) / 1000))),
      sendPingsAutomatically: true,
      maxBackpressure: 16 * 1024 * 1024,
      closeOnBackpressureLimit: 1,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => this.open(ws),
      message: (ws, message, isBinary) => this.message(ws, message, isBinary),
      drain: (ws) => d.hub.drained(ws),
      pong: (ws) => this.traffic(connOf(ws), Date.now()),
      close: (ws, code) => this.close(ws, code),
    });
    const sweepEvery = Math.max(50, Math.min(1000, d.config.authTimeoutMs / 4, d.config.presenceTimeoutMs / 4, d.config.tokenGraceMs / 4));
    this.sweepTimer = setInterval(() => this.sweep(Date.now()), sweepEvery);
    this.sweepTimer.unref();
    this.touchTimer = setInterval(() => this.touchPresence(Date.now()), Math.max(50, d.config.presenceTimeoutMs / 4));
    this.touchTimer.unref();
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  private upgrade(res: HttpResponse, req: HttpRequest, context: us_socket_context_t): void {
    const key = req.getHeader('sec-websocket-key');
    const protocolHeader = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const query = new URLSearchParams(req.getQuery() ?? '');
    if (this.draining) {
      res.writeStatus('503 Service Unavailable').end('draining');
      return;
    }
    const chosen = negotiateSubprotocol(protocolHeader);
    if (chosen === null) {
      res.writeStatus('400 Bad Request').writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ error: ErrorCode.INVALID_MESSAGE, message: 'unsupported subprotocol' }));
      return;
    }
    let q: QueryAuth | null = null;
    const token = query.get('token');
    if (token) {
      const lv = query.get('last_version');
      q = {
        token,
        device_id: query.get('device_id') ?? '',
        session_id: query.get('session_id') ?? undefined,
        device_type: query.get('device_type') ?? undefined,
        device_name: query.get('device_name') ?? undefined,
        os_version: query.get('os_version') ?? undefined,
        app_version: query.get('app_version') ?? undefined,
        last_version: lv !== null && /^\d+$/.test(lv) ? Number(lv) : undefined,
      };
    }
    const conn = newConn(chosen === SUBPROTOCOL_PROTO, q, Date.now(), this.d.config.rateLimit.burst);
    // Echo the subprotocol only when the client offered one (RFC 6455).
    res.upgrade<Slot>({ c: conn }, key, protocolHeader ? chosen : '', extensions, context);
  }

  private open(ws: WS): void {
    this.sockets.add(ws);
    this.d.metrics.wsConnections.inc({ state: 'open' });
    const c = connOf(ws);
    if (c.query) {
      const q = c.query;
      c.query = null;
      void this.authenticate(ws, q, undefined);
    }
  }

  private close(ws: WS, code: number): void {
    const c = connOf(ws);
    c.closed = true;
    this.sockets.delete(ws);
    this.d.metrics.wsConnections.dec({ state: 'open' });
    if (!c.authed) return;
    this.d.hub.leave(ws);
    if (c.counted) {
      c.counted = false;
      const reason = c.leaveReason ?? 'disconnected';
      this.d.presence.disconnect(c.sessionId, c.deviceId, this.d.config.nodeId, Date.now())
        .then(({ last }) => {
          if (last) return this.publishControl(c.sessionId, BusKind.DEVICE_LEFT, { device_id: c.deviceId, reason });
        })
        .catch((err) => this.d.log.warn({ err: (err as Error).message, code }, 'presence disconnect failed'));
    }
  }

  private sendEnv(ws: WS, env: Envelope): void {
    const c = connOf(ws);
    if (c.closed) return;
    send(ws, codecFor(c.binary ? SUBPROTOCOL_PROTO : null).encode(env));
  }

  private sendError(ws: WS, code: string, message: string, correlationId?: string, extra?: Record<string, unknown>): void {
    this.d.metrics.wsErrors.inc({ code });
    this.sendEnv(ws, errorEnvelope(code, message, correlationId, extra));
  }

  private closeWith(ws: WS, code: number, reason: string): void {
    const c = connOf(ws);
    if (c.closed) return;
    this.d.metrics.wsCloses.inc({ code: String(code) });
    ws.end(code, reason);
  }

  private traffic(c: Conn, now: number): void {
    c.lastSeen = now;
    c.active = true;
    if (c.authed && !c.counted && !c.closed && !c.authInFlight) {
      // Silent past the presence timeout, now heard from again: online once more.
      c.counted = true;
      this.d.presence.connect(c.sessionId, { deviceId: c.deviceId }, this.d.config.nodeId, now)
        .then(({ first }) => (first ? this.announceJoin(c) : undefined))
        .catch((err) => this.d.log.warn({ err: (err as Error).message }, 'presence reconnect failed'));
    }
  }

  private takeToken(c: Conn, now: number): boolean {
    const { perSecond, burst } = this.d.config.rateLimit;
    c.bucket = Math.min(burst, c.bucket + ((now - c.bucketAt) * perSecond) / 1000);
    c.bucketAt = now;
    if (c.bucket >= 1) {
      c.bucket -= 1;
      c.dropped = 0;
      return true;
    }
    return false;
  }

  private message(ws: WS, message: ArrayBuffer, isBinary: boolean): void {
    const c = connOf(ws);
    const now = Date.now();
    this.traffic(c, now);
    if (message.byteLength > this.d.config.maxMessageBytes) {
      this.sendError(ws, ErrorCode.PAYLOAD_TOO_LARGE, `frame exceeds ${this.d.config.maxMessageBytes} bytes`);
      this.closeWith(ws, CloseCode.TOO_BIG, 'message too big');
      return;
    }
    if (!this.takeToken(c, now)) {
      c.dropped++;
      if (now - c.limitedAt >= 1000) {
        c.limitedAt = now;
        this.sendError(ws, ErrorCode.RATE_LIMITED, 'too many messages; slow down');
      }
      if (c.dropped > this.d.config.rateLimit.burst) this.closeWith(ws, CloseCode.RATE_LIMITED, 'rate limited');
      return;
    }
    const codec = codecFor(c.binary ? SUBPROTOCOL_PROTO : null);
    const decoded = codec.decode(c.binary || isBinary ? message : Buffer.from(message).toString('utf8'));
    if (!decoded.ok) {
      this.strike(ws, decoded.code, decoded.message, decoded.correlation_id);
      return;
    }
    const env = decoded.envelope;
    this.d.metrics.wsMessages.inc({ type: String(env.type) });
    if (c.strikes > 0) c.strikes--;
    if (env.type === MessageType.AUTH) {
      void this.authenticate(ws, env.payload as unknown as QueryAuth, env.correlation_id);
      return;
    }
    if (!c.authed) {
      this.sendError(ws, ErrorCode.NOT_AUTHENTICATED, 'send AUTH first', env.correlation_id);
      return;
    }
    switch (env.type) {
      case MessageType.HEARTBEAT: {
        const ct = (env.payload as { client_time?: unknown }).client_time;
        this.sendEnv(ws, {
          type: MessageType.HEARTBEAT_ACK, session_id: c.sessionId, timestamp: now, correlation_id: env.correlation_id,
          payload: { client_time: typeof ct === 'number' ? ct : undefined, server_time: now },
        });
        return;
      }
      case MessageType.SNAPSHOT_REQUEST:
        this.d.hub.resync(ws, 'snapshot request', true);
        return;
      case MessageType.STATE_UPDATE:
        void this.stateUpdate(ws, env);
        return;
      case MessageType.DEVICE_LIST:
        this.d.presence.list(c.sessionId, now).then(
          (devices) => this.sendEnv(ws, { type: MessageType.DEVICE_LIST, session_id: c.sessionId, timestamp: Date.now(), correlation_id: env.correlation_id, payload: { devices } }),
          (err) => this.failed(ws, err, env.correlation_id),
        );
        return;
      case MessageType.UNKNOWN:
        this.strike(ws, ErrorCode.UNKNOWN_TYPE, 'message type 0 (UNKNOWN)', env.correlation_id);
        return;
      default:
        this.strike(ws, ErrorCode.INVALID_MESSAGE, `message type ${env.type} is server-to-client only`, env.correlation_id);
    }
  }

  /** A bad frame: ERROR and keep the connection, until repeated abuse closes it with 4400. */
  private strike(ws: WS, code: string, message: string, correlationId?: string): void {
    const c = connOf(ws);
    c.strikes += 2;
    this.sendError(ws, code, message, correlationId);
    if (c.strikes >= STRIKES_BEFORE_CLOSE * 2) this.closeWith(ws, CloseCode.PROTOCOL_ABUSE, 'too many invalid messages');
  }

  private failed(ws: WS, err: unknown, correlationId?: string): void {
    const { env, known } = errorFromThrown(err, correlationId);
    if (!known) this.d.log.error({ err }, 'unhandled error in WS handler');
    this.d.metrics.wsErrors.inc({ code: String((env.payload as { code: string }).code) });
    this.sendEnv(ws, env);
  }

  private async stateUpdate(ws: WS, env: Envelope): Promise<void> {
    const c = connOf(ws);
    const p = env.payload as { key?: unknown; value?: unknown; operation?: unknown; base_version?: unknown };
    const corr = env.correlation_id;
    if (typeof p.key !== 'string' || p.key.length === 0 || p.key.length > 1024) {
      this.strike(ws, ErrorCode.INVALID_MESSAGE, 'STATE_UPDATE needs a key (1-1024 chars)', corr);
      return;
    }
    if (p.base_version !== undefined && p.base_version !== null && (!Number.isSafeInteger(p.base_version) || (p.base_version as number) < 0)) {
      this.strike(ws, ErrorCode.INVALID_MESSAGE, 'base_version must be a whole number', corr);
      return;
    }
    let op: StateOp;
    switch (p.operation) {
      case 'SET':
        if (p.value === undefined) return this.strike(ws, ErrorCode.INVALID_MESSAGE, 'SET needs a value', corr);
        // A value sits one level below the state, which sits two below the envelope.
        if (jsonDepth(p.value, MAX_STATE_DEPTH - 1) > MAX_STATE_DEPTH - 1) {
          return this.strike(ws, ErrorCode.INVALID_MESSAGE, `value nested deeper than ${MAX_STATE_DEPTH - 1} levels`, corr);
        }
        op = { op: 'set', key: p.key, value: p.value as JsonValue };
        break;
      case 'DELETE':
        op = { op: 'delete', key: p.key };
        break;
      case 'INCREMENT': {
        const delta = p.value === undefined || p.value === null ? 1 : p.value;
        if (typeof delta !== 'number' || !Number.isFinite(delta)) return this.strike(ws, ErrorCode.INVALID_MESSAGE, 'INCREMENT value must be a finite number', corr);
        op = { op: 'incr', key: p.key, delta };
        break;
      }
      default:
        return this.strike(ws, ErrorCode.INVALID_MESSAGE, 'operation must be SET, DELETE or INCREMENT', corr);
    }
    this.d.inflight.count++;
    try {
      const r = await this.d.sessions.mutate({
        sessionId: c.sessionId, actor: { userId: c.userId, admin: c.admin }, ownerId: c.userId, op,
        baseVersion: (p.base_version as number | undefined) ?? undefined, deviceId: c.deviceId, originConn: c.id, correlationId: corr,
      }, 'ws');
      this.sendEnv(ws, {
        type: MessageType.STATE_UPDATE_ACK, session_id: c.sessionId, timestamp: Date.now(), correlation_id: corr,
        payload: { correlation_id: corr, version: r.version, ...(r.value !== undefined ? { value: r.value } : {}) },
      });
    } catch (err) {
      this.failed(ws, err, corr);
    } finally {
      this.d.inflight.count--;
    }
  }

  /** AUTH (first frame, `?token=`, or a refresh on a live connection). */
  private async authenticate(ws: WS, p: QueryAuth, correlationId: string | undefined): Promise<void> {
    const c = connOf(ws);
    const fail = (code: string, message: string, close: number = CloseCode.AUTH) => {
      this.sendEnv(ws, { type: MessageType.AUTH_FAILURE, timestamp: Date.now(), correlation_id: correlationId, payload: { code, message } });
      this.closeWith(ws, close, code);
    };
    if (c.authInFlight) {
      this.sendError(ws, ErrorCode.INVALID_MESSAGE, 'AUTH already in progress', correlationId);
      return;
    }
    if (!p || typeof p !== 'object' || typeof p.token !== 'string') return fail(ErrorCode.INVALID_TOKEN, 'AUTH needs a token');
    c.authInFlight = true;
    try {
      let who;
      try {
        who = await this.d.tokens.verifyAccess(p.token);
      } catch (err) {
        return fail(err instanceof AppError ? err.code : ErrorCode.INVALID_TOKEN, 'invalid or expired token');
      }
      if (c.closed) return;
      if (c.authed) {
        // Token refresh on a live connection: same user, same session.
        if (who.userId !== c.userId) return fail(ErrorCode.FORBIDDEN, 'token belongs to another user');
        c.tokenExpiresAt = who.expiresAt;
        c.expiryNotified = false;
        const admin = who.role === 'admin';
        if (admin !== c.admin) {
          if (admin) ws.subscribe(TOPIC.admins(c.binary));
          else ws.unsubscribe(TOPIC.admins(c.binary));
        }
        c.admin = admin;
        this.sendEnv(ws, {
          type: MessageType.AUTH_SUCCESS, session_id: c.sessionId, timestamp: Date.now(), correlation_id: correlationId,
          payload: this.authSuccessPayload(c, c.lastVersion, [], false),
        });
        return;
      }
      const deviceId = p.device_id;
      if (typeof deviceId !== 'string' || deviceId.length === 0 || deviceId.length > 256) return fail(ErrorCode.INVALID_MESSAGE, 'AUTH needs a device_id (1-256 chars)');
      if (p.session_id !== undefined && p.session_id !== null && (typeof p.session_id !== 'string' || !isUuid(p.session_id))) {
        return fail(ErrorCode.INVALID_MESSAGE, 'session_id must be a UUID');
      }
      const lastVersion = typeof p.last_version === 'number' && Number.isSafeInteger(p.last_version) && p.last_version >= 0 ? p.last_version : null;
      const store = this.d.sessions.store;
      const sessionId = (p.session_id as string | undefined)?.toLowerCase() ?? (await store.latestSessionOf(who.userId)) ?? randomUUID();
      const claimed = await store.claim(sessionId, who.userId);
      if (claimed.userId !== who.userId && who.role !== 'admin') return fail(ErrorCode.FORBIDDEN, 'session belongs to another user', CloseCode.FORBIDDEN);
      if (c.closed) return;
      c.userId = who.userId;
      c.admin = who.role === 'admin';
      c.sessionId = sessionId;
      c.deviceId = deviceId;
      c.tokenExpiresAt = who.expiresAt;
      c.authed = true;
      await this.d.hub.join(ws);
      if (c.closed) return; // close() already left the hub; nothing was counted yet
      const now = Date.now();
      const { first } = await this.d.presence.connect(sessionId, {
        deviceId, deviceType: str(p.device_type), deviceName: str(p.device_name), osVersion: str(p.os_version), appVersion: str(p.app_version),
      }, this.d.config.nodeId, now);
      // Counted only once the registry says so: close() undoes exactly what was done.
      c.counted = true;
      if (c.closed) {
        c.counted = false;
        await this.d.presence.disconnect(sessionId, deviceId, this.d.config.nodeId, Date.now());
        return;
      }
      const devices = await this.d.presence.list(sessionId, now);
      await this.d.hub.catchUp(ws, lastVersion, ({ resumed, version }) => {
        // Synchronously before the snapshot or replay frames: AUTH_SUCCESS always comes first.
        this.sendEnv(ws, {
          type: MessageType.AUTH_SUCCESS, session_id: sessionId, user_id: who.userId, device_id: deviceId, timestamp: Date.now(),
          correlation_id: correlationId, payload: this.authSuccessPayload(c, version, devices, resumed),
        });
        ws.subscribe(TOPIC.all(c.binary));
        if (c.admin) ws.subscribe(TOPIC.admins(c.binary));
      });
      // Joined and told so: a failed announcement must not undo that, so it is only logged.
      if (first) this.announceJoin(c).catch((err) => this.d.log.warn({ err: (err as Error).message }, 'DEVICE_JOINED announcement failed'));
    } catch (err) {
      const { env, known } = errorFromThrown(err, correlationId);
      if (!known) this.d.log.error({ err }, 'AUTH failed unexpectedly');
      const code = (env.payload as { code: string }).code;
      if (c.authed) {
        // Partially joined: undo so the client can retry cleanly on a new connection.
        this.d.hub.leave(ws);
        if (c.counted) {
          c.counted = false;
          this.d.presence.disconnect(c.sessionId, c.deviceId, this.d.config.nodeId, Date.now())
            .catch((e) => this.d.log.warn({ err: (e as Error).message }, 'presence undo after failed AUTH failed'));
        }
        c.authed = false;
      }
      fail(code, code === ErrorCode.STORE_UNAVAILABLE ? 'session store unavailable, retry shortly' : 'authentication failed');
    } finally {
      c.authInFlight = false;
    }
  }

  private authSuccessPayload(c: Conn, version: number, devices: DeviceInfo[], resumed: boolean) {
    return {
      session_id: c.sessionId, user_id: c.userId, device_id: c.deviceId, node_id: this.d.config.nodeId, version, devices,
      heartbeat_interval_ms: this.d.config.heartbeatIntervalMs, resumed,
    };
  }

  async announceJoin(c: Conn): Promise<void> {
    const devices = await this.d.presence.list(c.sessionId, Date.now());
    const device = devices.find((d) => d.device_id === c.deviceId);
    if (device) await this.publishControl(c.sessionId, BusKind.DEVICE_JOINED, { device });
  }

  publishControl(sessionId: string, kind: ControlFrame['kind'], body: Record<string, unknown>): Promise<void> {
    return this.d.bus.publish(sessionId, encodeControlFrame({ kind, sessionId, originNode: this.d.config.nodeId, body }));
  }

  /** Per-node sweep: auth deadlines, token expiry grace, presence silence. */
  private sweep(now: number): void {
    const { authTimeoutMs, tokenGraceMs, presenceTimeoutMs, nodeId } = this.d.config;
    for (const ws of this.sockets) {
      const c = connOf(ws);
      if (c.closed) continue;
      if (!c.authed) {
        if (!c.authInFlight && now - c.openedAt > authTimeoutMs) {
          this.sendEnv(ws, { type: MessageType.AUTH_FAILURE, timestamp: now, payload: { code: ErrorCode.NOT_AUTHENTICATED, message: 'no AUTH within the deadline' } });
          this.closeWith(ws, CloseCode.AUTH, 'auth timeout');
        }
        continue;
      }
      if (now >= c.tokenExpiresAt) {
        if (!c.expiryNotified) {
          c.expiryNotified = true;
          this.sendError(ws, ErrorCode.TOKEN_EXPIRED, `token expired; send AUTH with a fresh token within ${tokenGraceMs} ms`);
        } else if (now >= c.tokenExpiresAt + tokenGraceMs) {
          this.closeWith(ws, CloseCode.AUTH, 'token expired');
          continue;
        }
      }
      if (c.counted && now - c.lastSeen > presenceTimeoutMs) {
        c.counted = false;
        this.d.presence.disconnect(c.sessionId, c.deviceId, nodeId, now)
          .then(({ last }) => (last ? this.publishControl(c.sessionId, BusKind.DEVICE_LEFT, { device_id: c.deviceId, reason: 'timeout' }) : undefined))
          .catch((err) => this.d.log.warn({ err: (err as Error).message }, 'presence timeout update failed'));
      }
    }
  }

  private touchPresence(now: number): void {
    const entries: Array<{ sessionId: string; deviceId: string }> = [];
    for (const ws of this.sockets) {
      const c = connOf(ws);
      if (c.active && c.counted && !c.closed) entries.push({ sessionId: c.sessionId, deviceId: c.deviceId });
      c.active = false;
    }
    if (entries.length > 0) this.d.presence.touch(entries, now).catch((err) => this.d.log.warn({ err: (err as Error).message }, 'presence touch failed'));
  }

  /**
   * Drain for shutdown: refuse new upgrades, tell every client to reconnect elsewhere, close with
   * 1012 spread over `spreadMs` so the survivors are not hit by a thundering herd.
   */
  async drain(spreadMs: number): Promise<void> {
    this.draining = true;
    const all = [...this.sockets];
    const batches = Math.max(1, Math.min(20, all.length));
    const per = Math.ceil(all.length / batches);
    for (let i = 0; i < all.length; i += per) {
      for (const ws of all.slice(i, i + per)) {
        const c = connOf(ws);
        if (c.closed) continue;
        const retry = 100 + Math.floor(Math.random() * 900);
        ws.cork(() => {
          this.sendEnv(ws, { type: MessageType.RECONNECT, timestamp: Date.now(), payload: { retry_after_ms: retry } });
          this.closeWith(ws, CloseCode.DRAINING, 'node draining');
        });
      }
      if (i + per < all.length) await new Promise((r) => setTimeout(r, spreadMs / batches));
    }
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    if (this.touchTimer) clearInterval(this.touchTimer);
  }
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v.length <= 256 ? v : undefined;
}
