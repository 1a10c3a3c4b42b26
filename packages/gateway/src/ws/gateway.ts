import type { HttpRequest, HttpResponse, TemplatedApp, us_socket_context_t } from 'uWebSockets.js';
import {
  CloseCode, ErrorCode, MessageType, codecFor, isValidId, MAX_ID_LENGTH, negotiateSubprotocol, SUBPROTOCOL_PROTO, type Envelope,
} from '@harmonyflow/protocol';
import { connOf, newConn, type Conn, type QueryAuth, type Slot, type WS } from './conn';
import type { WsContext } from './context';
import { authenticate } from './handlers/auth';
import { deviceList } from './handlers/deviceList';
import { heartbeat } from './handlers/heartbeat';
import { snapshotRequest } from './handlers/snapshotRequest';
import { stateUpdate } from './handlers/stateUpdate';
import { sendEnv } from './io';

/**
 * The `/ws` endpoint: upgrade (subprotocol, `?token=`), the connection lifecycle, dispatch of
 * each frame to its handler (`handlers/`), and one node-wide sweep for deadlines (auth, token
 * expiry grace, presence silence): no timers or closures per socket.
 */
export class WsGateway {
  readonly sockets = new Set<WS>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private draining = false;

  constructor(app: TemplatedApp, private readonly ctx: WsContext) {
    const { config } = ctx;
    app.ws<Slot>('/ws', {
      // Last-resort cap only: Limits answers with ERROR + 1009 instead of uWS's bare 1006.
      maxPayloadLength: Math.max(4 * config.maxMessageBytes, 1024 * 1024),
      idleTimeout: Math.max(8, Math.min(960, Math.ceil((config.heartbeatIntervalMs * 2) / 1000))),
      sendPingsAutomatically: true,
      maxBackpressure: 16 * 1024 * 1024,
      closeOnBackpressureLimit: 1,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => this.open(ws),
      message: (ws, message, isBinary) => this.message(ws, message, isBinary),
      drain: (ws) => ctx.hub.drained(ws),
      pong: (ws) => this.traffic(connOf(ws), Date.now()),
      close: (ws) => this.close(ws),
    });
    const sweepEvery = Math.max(50, Math.min(1000, config.authTimeoutMs / 4, config.presenceTimeoutMs / 4, config.tokenGraceMs / 4));
    this.sweepTimer = setInterval(() => this.sweep(Date.now()), sweepEvery);
    this.sweepTimer.unref();
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
      res.writeStatus('503 Service Unavailable').writeHeader('content-type', 'application/json')
        .end(JSON.stringify({ error: ErrorCode.NOT_READY, message: 'node draining', reason: 'draining' }));
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
        last_epoch: query.get('last_epoch') ?? undefined,
      };
    }
    const conn = newConn(chosen === SUBPROTOCOL_PROTO, q, Date.now(), this.ctx.config.rateLimit.burst);
    // Echo the subprotocol only when the client offered one (RFC 6455).
    res.upgrade<Slot>({ c: conn }, key, protocolHeader ? chosen : '', extensions, context);
  }

  private open(ws: WS): void {
    this.sockets.add(ws);
    this.ctx.metrics.wsConnections.inc({ state: 'open' });
    const c = connOf(ws);
    c.ws = ws;
    if (c.query) {
      const q = c.query;
      c.query = null;
      // Frames that arrive before this settles are held (holding), not refused.
      void authenticate(this.ctx, ws, q, undefined);
    }
  }

  private close(ws: WS): void {
    const c = connOf(ws);
    c.closed = true;
    c.ws = null; // uWS throws on any use of a closed socket
    c.held = null;
    this.sockets.delete(ws);
    this.ctx.metrics.wsConnections.dec({ state: 'open' });
    // An AUTH joins the session's hub before its claim says whether the user may stay (auth.ts):
    // a socket closing meanwhile leaves it too. (A no-op for a socket in no session.)
    this.ctx.hub.leave(ws);
    if (!c.authed) return;
    this.ctx.connections.down(c);
    this.ctx.tracker.leave(c, c.leaveReason ?? 'disconnected');
  }

  private traffic(c: Conn, now: number): void {
    c.lastSeen = now;
    c.active = true;
    this.ctx.tracker.heard(c, now);
  }

  private message(ws: WS, message: ArrayBuffer, isBinary: boolean): void {
    // The connection record and the clock, read once per frame.
    const c = connOf(ws);
    const now = Date.now();
    this.traffic(c, now);
    if (!this.ctx.limits.admit(ws, c, message.byteLength, now)) return;
    if (c.holding) {
      this.ctx.limits.hold(ws, c, message, isBinary);
      return;
    }
    this.dispatch(ws, message, isBinary, c, now);
  }

  /** Decodes one frame and hands it to its handler. */
  dispatch(ws: WS, message: ArrayBuffer | Uint8Array, isBinary: boolean, c: Conn = connOf(ws), now = Date.now()): void {
    if (c.closed) return;
    const { limits } = this.ctx;
    const decoded = codecFor(c.binary ? SUBPROTOCOL_PROTO : null).decode(c.binary || isBinary ? message : Buffer.from(message as ArrayBuffer).toString('utf8'));
    // A correlation id is echoed only when valid: a reply must not carry an id the service refuses (SPEC §9).
    if (!decoded.ok) {
      const corr = isValidId(decoded.correlation_id) ? decoded.correlation_id : undefined;
      if (!c.authed) return this.notAuthenticated(ws, corr);
      limits.strike(ws, decoded.code, decoded.message, corr);
      return;
    }
    const env: Envelope = decoded.envelope;
    const corrValid = env.correlation_id === undefined || isValidId(env.correlation_id);
    if (corrValid) this.ctx.metrics.message(env.type).inc();
    // SPEC §3: before authentication, anything but AUTH is refused as such, whatever else is wrong with it.
    if (!c.authed && env.type !== MessageType.AUTH) return this.notAuthenticated(ws, corrValid ? env.correlation_id : undefined);
    if (!corrValid) {
      const why = `correlation_id must be 1-${MAX_ID_LENGTH} characters of well-formed Unicode`;
      if (!c.authed) return this.ctx.io.authFailure(ws, ErrorCode.INVALID_MESSAGE, why);
      limits.strike(ws, ErrorCode.INVALID_MESSAGE, why);
      return;
    }
    if (env.type === MessageType.AUTH) {
      void authenticate(this.ctx, ws, env.payload as unknown as QueryAuth, env.correlation_id);
      return;
    }
    limits.good(c);
    switch (env.type) {
      case MessageType.HEARTBEAT:
        return heartbeat(ws, env, now);
      case MessageType.SNAPSHOT_REQUEST:
        return snapshotRequest(this.ctx, ws);
      case MessageType.STATE_UPDATE:
        void stateUpdate(this.ctx, ws, env);
        return;
      case MessageType.DEVICE_LIST:
        return deviceList(this.ctx, ws, env, now);
      case MessageType.UNKNOWN:
        return limits.strike(ws, ErrorCode.UNKNOWN_TYPE, 'message type 0 (UNKNOWN)', env.correlation_id);
      default:
        return limits.strike(ws, ErrorCode.INVALID_MESSAGE, `message type ${env.type} is server-to-client only`, env.correlation_id);
    }
  }

  /** A first frame that is not AUTH (SPEC §3): AUTH_FAILURE and close 4401 at once. */
  private notAuthenticated(ws: WS, correlationId: string | undefined): void {
    this.ctx.io.authFailure(ws, ErrorCode.NOT_AUTHENTICATED, 'the first frame must be AUTH', correlationId);
  }

  /** Per-node sweep: auth deadlines, token expiry grace, presence silence. */
  private sweep(now: number): void {
    const { authTimeoutMs, tokenGraceMs, presenceTimeoutMs } = this.ctx.config;
    const { io, tracker } = this.ctx;
    for (const ws of this.sockets) {
      const c = connOf(ws);
      if (c.closed) continue;
      if (!c.authed) {
        if (!c.authInFlight && now - c.openedAt > authTimeoutMs) {
          io.authFailure(ws, ErrorCode.NOT_AUTHENTICATED, 'no AUTH within the deadline');
        }
        continue;
      }
      if (now >= c.tokenExpiresAt) {
        if (!c.expiryNotified) {
          c.expiryNotified = true;
          io.error(ws, ErrorCode.TOKEN_EXPIRED, `token expired; send AUTH with a fresh token within ${tokenGraceMs} ms`);
        } else if (now >= c.tokenExpiresAt + tokenGraceMs) {
          io.close(ws, CloseCode.AUTH, 'token expired');
          continue;
        }
      }
      if (c.counted && now - c.lastSeen > presenceTimeoutMs) tracker.leave(c, 'timeout');
    }
  }

  /** Stops taking new connections: upgrades get 503 from now on. */
  refuseNew(): void {
    this.draining = true;
  }

  /**
   * Drain for shutdown: tell every client to reconnect elsewhere, close with 1012 spread over
   * `spreadMs` so the survivors are not hit by a thundering herd.
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
          sendEnv(ws, { type: MessageType.RECONNECT, timestamp: Date.now(), payload: { retry_after_ms: retry } });
          this.ctx.io.close(ws, CloseCode.DRAINING, 'node draining');
        });
      }
      if (i + per < all.length) await new Promise((r) => setTimeout(r, spreadMs / batches));
    }
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }
}
