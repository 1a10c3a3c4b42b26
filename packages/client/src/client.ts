import {
  CloseCode, MessageType, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO, codecFor, type Codec, type DeviceInfo, type Envelope,
  type JsonObject, type JsonValue,
} from '@harmonyflow/protocol';

/** The subset of the WHATWG WebSocket the client needs (browsers' and the `ws` package's both fit). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: string | ArrayBufferView | ArrayBuffer): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}
export type WebSocketFactory = new (url: string, protocols?: string | string[]) => WebSocketLike;

export interface SessionClientOptions {
  /** `ws://host:port/ws` (or through a load balancer). */
  readonly url: string;
  /** An access token, or a function returning a fresh one (called on every (re)connect). */
  readonly token: string | (() => string | Promise<string>);
  readonly deviceId: string;
  /** Join this session (a UUID); omitted → the user's most recent session. */
  readonly sessionId?: string;
  readonly deviceType?: string;
  readonly deviceName?: string;
  readonly appVersion?: string;
  readonly codec?: 'json' | 'proto';
  /** Defaults to `globalThis.WebSocket`; in Node pass `require('ws')`. */
  readonly WebSocket?: WebSocketFactory;
  readonly reconnect?: { readonly minDelayMs?: number; readonly maxDelayMs?: number; readonly enabled?: boolean };
}

export interface ClientEvents {
  /** Any change of the local state mirror (after a snapshot, an update or an acknowledged write). */
  state: (state: Readonly<JsonObject>, version: number) => void;
  update: (payload: Record<string, unknown>) => void;
  connected: (info: { sessionId: string; resumed: boolean; nodeId: string }) => void;
  disconnected: (info: { code: number; reason: string; willReconnect: boolean }) => void;
  device: (event: { type: 'joined' | 'left'; device?: DeviceInfo; deviceId?: string; reason?: string }) => void;
  broadcast: (payload: { message: string; type: string }) => void;
  handoff: (event: { type: 'requested'; token: string; sourceDevice: string } | { type: 'completed'; targetDevice: string }) => void;
  error: (payload: { code: string; message: string; correlation_id?: string }) => void;
}

interface PendingOp {
  readonly env: Envelope;
  retries?: number;
  resolve(r: { version: number; value?: JsonValue }): void;
  reject(err: Error): void;
}

/** Write errors worth retrying as they are. */
const RETRYABLE = new Set(['store_unavailable', 'rate_limited']);

/** Close codes after which reconnecting cannot help. */
const FATAL = new Set<number>([CloseCode.FORBIDDEN, CloseCode.PROTOCOL_ABUSE, CloseCode.TOO_BIG, CloseCode.KICKED]);

/** A write the server refused (version conflict, invalid, …), with the server's error code. */
export class SessionError extends Error {
  constructor(readonly code: string, message: string, readonly details: Record<string, unknown> = {}) {
    super(message);
  }
}

/**
 * A device's live view of one session. Keeps a local mirror of the state, writes through the
 * server (each write resolves on its ACK), and survives disconnects: it reconnects with backoff,
 * resumes from the last version it saw (the server replays what was missed), and re-sends
 * unacknowledged writes with their original correlation ids, which the server applies once.
 */
export class SessionClient {
  /** Null-prototype: keys such as `__proto__` are plain data here too. */
  state: JsonObject = Object.create(null);
  /** Highest version seen in the session's update stream. */
  version = 0;
  sessionId: string | undefined;
  private readonly keyVersions = new Map<string, number>();
  private readonly pending = new Map<string, PendingOp>();
  private readonly listeners: { [K in keyof ClientEvents]?: Array<ClientEvents[K]> } = {};
  private readonly codec: Codec;
  private ws: WebSocketLike | null = null;
  private seq = 0;
  private attempts = 0;
  private stopped = false;
  private connectedOnce: { resolve: () => void; reject: (e: Error) => void } | null = null;
  private retryAfter: number | null = null;
  private hasState = false;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly opts: SessionClientOptions) {
    this.codec = codecFor(opts.codec === 'proto' ? SUBPROTOCOL_PROTO : SUBPROTOCOL_JSON);
    this.sessionId = opts.sessionId;
  }

  on<K extends keyof ClientEvents>(event: K, fn: ClientEvents[K]): this {
    (this.listeners[event] ??= [] as never[]).push(fn as never);
    return this;
  }

  private emit<K extends keyof ClientEvents>(event: K, ...args: Parameters<ClientEvents[K]>): void {
    for (const fn of this.listeners[event] ?? []) (fn as (...a: unknown[]) => void)(...args);
  }

  /** Connects and resolves once authenticated and holding the session's state. */
  connect(): Promise<void> {
    this.stopped = false;
    return new Promise((resolve, reject) => {
      this.connectedOnce = { resolve, reject };
      void this.open();
    });
  }

  /** Closes for good: no reconnect; unacknowledged writes are rejected. */
  close(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.ws?.close(1000, 'client closed');
    for (const op of this.pending.values()) op.reject(new SessionError('closed', 'client closed before the write was acknowledged'));
    this.pending.clear();
  }

  set(key: string, value: JsonValue): Promise<{ version: number }> {
    return this.write({ key, value, operation: 'SET' });
  }

  delete(key: string): Promise<{ version: number }> {
    return this.write({ key, operation: 'DELETE' });
  }

  increment(key: string, delta = 1): Promise<{ version: number; value?: JsonValue }> {
    return this.write({ key, value: delta, operation: 'INCREMENT' });
  }

  /** Number of writes sent but not yet acknowledged. */
  get unacknowledged(): number {
    return this.pending.size;
  }

  private write(payload: Record<string, unknown>): Promise<{ version: number; value?: JsonValue }> {
    const correlationId = `${this.opts.deviceId}-${Date.now().toString(36)}-${(this.seq++).toString(36)}`;
    const env: Envelope = { type: MessageType.STATE_UPDATE, timestamp: Date.now(), correlation_id: correlationId, payload };
    return new Promise((resolve, reject) => {
      this.pending.set(correlationId, { env, resolve, reject });
      if (this.ws && this.ws.readyState === 1 && this.hasState) this.sendEnv(env);
    });
  }

  private sendEnv(env: Envelope): void {
    const data = this.codec.encode(env);
    this.ws?.send(data);
  }

  private async open(): Promise<void> {
    const WS = this.opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!WS) throw new Error('no WebSocket implementation: pass options.WebSocket');
    let token: string;
    try {
      token = typeof this.opts.token === 'string' ? this.opts.token : await this.opts.token();
    } catch (err) {
      this.scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    const ws = new WS(this.opts.url, this.opts.codec === 'proto' ? SUBPROTOCOL_PROTO : SUBPROTOCOL_JSON);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.hasState = false;
    ws.onopen = () => {
      this.sendEnv({
        type: MessageType.AUTH,
        timestamp: Date.now(),
        payload: {
          token, device_id: this.opts.deviceId, session_id: this.sessionId, device_type: this.opts.deviceType,
          device_name: this.opts.deviceName, app_version: this.opts.appVersion,
          ...(this.hasEverSynced ? { last_version: this.version } : {}),
        },
      });
    };
    ws.onmessage = (ev) => this.onMessage(ev.data);
    ws.onerror = () => undefined; // onclose follows and decides
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.hasState = false;
      const willReconnect = !this.stopped && !FATAL.has(ev.code) && this.opts.reconnect?.enabled !== false;
      this.emit('disconnected', { code: ev.code, reason: ev.reason, willReconnect });
      if (willReconnect) this.scheduleReconnect();
      else {
        for (const op of this.pending.values()) op.reject(new SessionError('disconnected', `connection closed (${ev.code})`));
        this.pending.clear();
        this.connectedOnce?.reject(new SessionError('disconnected', `connection closed (${ev.code} ${ev.reason})`));
        this.connectedOnce = null;
      }
    };
  }

  private hasEverSynced = false;

  private scheduleReconnect(): void {
    const min = this.opts.reconnect?.minDelayMs ?? 100;
    const max = this.opts.reconnect?.maxDelayMs ?? 10_000;
    const backoff = Math.min(max, min * 2 ** Math.min(this.attempts++, 10));
    const delay = this.retryAfter ?? Math.round(backoff / 2 + Math.random() * (backoff / 2));
    this.retryAfter = null;
    this.timer = setTimeout(() => void this.open(), delay);
  }

  private onMessage(data: unknown): void {
    const r = this.codec.decode(typeof data === 'string' ? data : new Uint8Array(data as ArrayBuffer));
    if (!r.ok) return;
    const env = r.envelope;
    const p = env.payload as Record<string, unknown>;
    switch (env.type) {
      case MessageType.AUTH_SUCCESS:
        this.sessionId = p.session_id as string;
        this.attempts = 0;
        this.emit('connected', { sessionId: this.sessionId, resumed: p.resumed === true, nodeId: String(p.node_id) });
        if (p.resumed === true) this.ready();
        return;
      case MessageType.SNAPSHOT_RESPONSE:
        this.state = Object.assign(Object.create(null), p.state_data as JsonObject);
        this.version = p.version as number;
        this.keyVersions.clear();
        this.emit('state', this.state, this.version);
        this.ready();
        return;
      case MessageType.STATE_UPDATE:
        this.applyUpdate(p);
        return;
      case MessageType.STATE_UPDATE_ACK: {
        const op = this.pending.get(String(p.correlation_id ?? env.correlation_id));
        if (!op) return;
        this.pending.delete(String(p.correlation_id ?? env.correlation_id));
        const version = p.version as number;
        const w = op.env.payload as { key: string; value?: JsonValue; operation: string };
        const value = w.operation === 'INCREMENT' ? (p.value as JsonValue) : w.value;
        if ((this.keyVersions.get(w.key) ?? 0) < version) {
          this.keyVersions.set(w.key, version);
          if (w.operation === 'DELETE') delete this.state[w.key];
          else if (value !== undefined) this.state[w.key] = value;
          this.emit('state', this.state, this.version);
        }
        op.resolve({ version, value: w.operation === 'INCREMENT' ? value : undefined });
        return;
      }
      case MessageType.ERROR: {
        const corr = (p.correlation_id as string | undefined) ?? env.correlation_id;
        const op = corr ? this.pending.get(corr) : undefined;
        if (op && RETRYABLE.has(String(p.code))) {
          // Transient (store failover, rate limit): re-send later with the same correlation id;
          // the server applies a (device, correlation id) pair at most once.
          op.retries = (op.retries ?? 0) + 1;
          setTimeout(() => {
            if (this.pending.get(corr!) === op && this.ws && this.hasState) this.sendEnv(op.env);
          }, Math.min(2000, 100 * 2 ** Math.min(op.retries, 5)));
        } else if (op) {
          this.pending.delete(corr!);
          op.reject(new SessionError(String(p.code), String(p.message), p));
        } else this.emit('error', p as { code: string; message: string });
        return;
      }
      case MessageType.AUTH_FAILURE:
        this.emit('error', p as { code: string; message: string });
        return;
      case MessageType.DEVICE_JOINED:
        this.emit('device', { type: 'joined', device: p.device as DeviceInfo });
        return;
      case MessageType.DEVICE_LEFT:
        this.emit('device', { type: 'left', deviceId: p.device_id as string, reason: p.reason as string });
        return;
      case MessageType.BROADCAST:
        this.emit('broadcast', p as { message: string; type: string });
        return;
      case MessageType.HANDOFF_REQUESTED:
        this.emit('handoff', { type: 'requested', token: String(p.token), sourceDevice: String(p.source_device) });
        return;
      case MessageType.HANDOFF_COMPLETED:
        this.emit('handoff', { type: 'completed', targetDevice: String(p.target_device) });
        return;
      case MessageType.RECONNECT:
        this.retryAfter = typeof p.retry_after_ms === 'number' ? p.retry_after_ms : null;
        return;
      default:
        return;
    }
  }

  /** State is in place: flush writes that were waiting (or must be retried after a reconnect). */
  private ready(): void {
    const wasReady = this.hasState;
    this.hasState = true;
    this.hasEverSynced = true;
    if (!wasReady) for (const op of this.pending.values()) this.sendEnv(op.env);
    this.connectedOnce?.resolve();
    this.connectedOnce = null;
  }

  private applyUpdate(p: Record<string, unknown>): void {
    const version = p.version as number;
    if (version > this.version) this.version = version;
    if (p.operation === 'PATCH') {
      const changes = (p.changes ?? {}) as JsonObject;
      for (const k of Object.keys(changes)) this.setKey(k, changes[k], version);
      for (const k of (p.deleted_keys as string[] | undefined) ?? []) this.setKey(k, undefined, version);
    } else {
      this.setKey(p.key as string, p.operation === 'DELETE' ? undefined : (p.value as JsonValue), version);
    }
    this.emit('update', p);
    this.emit('state', this.state, this.version);
  }

  private setKey(key: string, value: JsonValue | undefined, version: number): void {
    if ((this.keyVersions.get(key) ?? 0) >= version) return; // our own newer write already landed
    this.keyVersions.set(key, version);
    if (value === undefined) delete this.state[key];
    else this.state[key] = value;
  }
}
