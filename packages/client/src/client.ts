import {
  CloseCode, ErrorCode, MessageType, isValidId, stateKeyProblem,
  type AuthSuccessPayload, type Codec, type DeviceInfo, type Envelope, type JsonObject, type JsonValue,
} from '@harmonyflow/protocol/lite';
import { Emitter } from './emitter';
import { ClientErrorCode, SessionError } from './errors';
import { httpBaseFromWsUrl, requestJson, type FetchLike } from './http';
import { Outbox, type PendingWrite, type WriteOperation } from './outbox';
import { MemoryStorage, type StorageLike } from './storage';
import { refreshDelayMs, type TokenSource } from './token';
import { frameBytes, jsonCodec } from './wire';

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
/** A WebSocket constructor: `globalThis.WebSocket` in browsers, `require('ws')` in Node. */
export type WebSocketFactory = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Where the client is: see {@link SessionClient.status}. */
export type ConnectionStatus = 'idle' | 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** What a write resolves with. */
export interface WriteResult {
  /** The session version the write produced; for a duplicate, the session's version at the time. */
  version: number;
  /** The value the server reports (the resulting number for an INCREMENT). */
  value?: JsonValue;
  /**
   * The server had already processed this write's mutation id (its ACK was lost, or an earlier
   * client with the same storage sent it) and did nothing this time. Processed means applied,
   * or refused with an error a retry would repeat (e.g. `version_conflict`), SPEC §10: a
   * duplicate does not say the write took effect; `state` shows what did.
   */
  duplicate?: true;
}

export interface WriteOptions {
  /** Refuse the write (`version_conflict`) if the key changed after this version (SPEC §4 rebase rule). */
  readonly baseVersion?: number;
}

export interface SessionClientOptions {
  /** `ws://host:port/ws` or `wss://…` (directly or through a load balancer). */
  readonly url: string;
  /**
   * The access token, or a function returning a fresh one. The function is called on every
   * connection attempt, when the current token is near its expiry, and after the server
   * refused a token; a fixed string is never replaced.
   */
  readonly token: TokenSource;
  /** This device's id (1–128 characters, no lone surrogates), stable across restarts: the offline queue is keyed by it. */
  readonly deviceId: string;
  /** The session (a UUID; an unknown one is created). Omitted: the user's most recent session. */
  readonly sessionId?: string;
  readonly deviceType?: string;
  readonly deviceName?: string;
  readonly osVersion?: string;
  readonly appVersion?: string;
  /** Wire codec: JSON (default) or `protoCodec` from `@harmonyflow/client/proto`. */
  readonly codec?: 'json' | Codec;
  /** Defaults to `globalThis.WebSocket`; in Node < 22 pass the `ws` package. */
  readonly WebSocket?: WebSocketFactory;
  /**
   * Where unacknowledged writes are kept (Web Storage shape, sync or async): `localStorage`,
   * `FileStorage` from `@harmonyflow/client/node`, or your own. Default: in memory.
   */
  readonly storage?: StorageLike;
  /** Prefix of the storage keys. Default `harmonyflow:outbox`. */
  readonly storagePrefix?: string;
  /** Base URL of the HTTP API. Default: derived from `url` (`ws://h:p/ws` → `http://h:p`). */
  readonly httpUrl?: string;
  /** `fetch` for the HTTP helpers. Default: `globalThis.fetch`. */
  readonly fetch?: FetchLike;
  readonly reconnect?: {
    /** Default true. False: the first lost connection closes the client. */
    readonly enabled?: boolean;
    /** Backoff bounds (full jitter, doubling). Defaults 100 ms and 10 s. */
    readonly minDelayMs?: number;
    readonly maxDelayMs?: number;
  };
  /** Refresh a JWT this long before its `exp` (at most half its lifetime). 0 disables proactive refresh. Default 60 000. */
  readonly refreshBeforeExpiryMs?: number;
  /** Re-send a write (same ids, so applied once) when no ACK came within this. Default 10 000. */
  readonly ackTimeoutMs?: number;
  /** Frame limit assumed until the server states its own in AUTH_SUCCESS. Default 65 536. */
  readonly maxMessageBytes?: number;
}

/** Events; subscribe with `on`, `once`, `off`. */
export interface ClientEvents<S> {
  /** The connection status changed. */
  status: (status: ConnectionStatus) => void;
  /** The state mirror changed (snapshot, another device's update, or an acknowledged write). */
  state: (state: Readonly<Partial<S>>, version: number) => void;
  /** A STATE_UPDATE from another device (or the HTTP API), as received. */
  update: (payload: Record<string, unknown>) => void;
  /** Authenticated and holding the session's state. */
  connected: (info: { sessionId: string; resumed: boolean; nodeId: string; epoch?: string }) => void;
  /** The connection closed; `willReconnect` tells whether the client tries again. */
  disconnected: (info: { code: number; reason: string; willReconnect: boolean }) => void;
  /** The number of unacknowledged writes changed. */
  queue: (pending: number) => void;
  device: (event: { type: 'joined'; device: DeviceInfo } | { type: 'left'; deviceId: string; reason: string }) => void;
  broadcast: (payload: { message: string; type: string }) => void;
  handoff: (event: { type: 'requested'; token: string; sourceDevice: string } | { type: 'completed'; targetDevice: string }) => void;
  /** Cluster figures pushed to admin-role connections. */
  admin: (payload: Record<string, unknown>) => void;
  /** A failure not tied to a pending promise: a refused token after connect, storage trouble, a server ERROR. */
  error: (error: SessionError) => void;
}

/** Keys whose value may be a number (the ones `increment` accepts). */
export type NumericKeys<S> = { [K in keyof S]-?: number extends S[K] ? K : never }[keyof S] & string;

/** Write errors that say nothing about the write itself: re-send it (same ids, applied once). */
const RETRYABLE = new Set<string>([ErrorCode.STORE_UNAVAILABLE, ErrorCode.RATE_LIMITED, ErrorCode.INTERNAL]);
/** A write refused this often with `internal` is given up, so one poison write cannot block the queue. */
const MAX_INTERNAL_RETRIES = 5;
/** AUTH_FAILURE codes a new connection could get past (the server had trouble, not the token). */
const TRANSIENT_AUTH = new Set<string>([ErrorCode.STORE_UNAVAILABLE, ErrorCode.INTERNAL, ErrorCode.NOT_AUTHENTICATED]);
/** AUTH_FAILURE codes a different token could fix. */
const TOKEN_AUTH = new Set<string>([ErrorCode.INVALID_TOKEN, ErrorCode.TOKEN_EXPIRED, ErrorCode.FORBIDDEN, ErrorCode.UNAUTHORIZED]);
/** Tokens from `token()` tried in a row after refusals before giving up. */
const MAX_TOKEN_RETRIES = 3;
const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024;
/** Stands in for the mutation id when sizing a write before it has one (widest possible). */
const WIDEST_ID = Number.MAX_SAFE_INTEGER;

type SocketPhase = 'authing' | 'syncing' | 'live';

/**
 * A device's live view of one session (SPEC §5, §9, §10).
 *
 * - Mirrors the session's state (`state`, `version`, `epoch`) from snapshots, other devices'
 *   updates and its own acknowledged writes.
 * - Every write gets the next `mutation_id` of this (session, device), is saved through
 *   `storage` before it is sent, and is sent one at a time in id order until acknowledged —
 *   across reconnects, node restarts and app restarts (a new client with the same `deviceId`,
 *   `sessionId` and storage sends what an earlier one left). The server applies each id once.
 * - Reconnects with jittered backoff (honouring RECONNECT), resumes with `last_version` and
 *   `last_epoch`, refreshes the token on the live connection before it expires, and stops for
 *   good only when retrying cannot help (refused token, kicked, protocol abuse) or on `close()`.
 *
 * One client per (storage, deviceId, sessionId) at a time: two would share one queue.
 */
export class SessionClient<S extends { [K in keyof S]: JsonValue } = JsonObject> extends Emitter<ClientEvents<S>> {
  /** The state as the server last told it (null-prototype: `__proto__` is plain data). */
  state: Readonly<Partial<S>> = Object.create(null);
  /** The highest session version reflected in {@link state} (own ACKs included). */
  version = 0;
  /** The session's incarnation (SPEC §9); versions restart in a new epoch. */
  epoch: string | undefined;
  /** The session id: given, or learnt from AUTH_SUCCESS. */
  sessionId: string | undefined;
  /** Devices of the session as of AUTH_SUCCESS, kept current by DEVICE_JOINED/LEFT. */
  deviceList: DeviceInfo[] = [];
  private _status: ConnectionStatus = 'idle';

  private readonly opts: SessionClientOptions;
  private readonly WS: WebSocketFactory;
  private readonly codec: Codec;
  private readonly outbox: Outbox;
  private readonly httpBase: string;
  private ws: WebSocketLike | null = null;
  private phase: SocketPhase | null = null;
  private stateReady = false;
  private outboxReady = false;
  /** The outbox load last seen by {@link loadOutbox} (a failed one is replaced by the next try). */
  private outboxLoad: Promise<void> | null = null;
  private everLive = false;
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];

  /** Every version ≤ mark is reflected in the state: the `last_version` to resume from. */
  private mark = 0;
  /** Own ACK versions above `mark`: the gaps the mark may step over. */
  private readonly acked = new Set<number>();
  /** The latest snapshot's version: anything at or below it is already in the state. */
  private floor = 0;
  private readonly keyVersions = new Map<string, number>();

  private token: string | null = null;
  private tokenAt = 0;
  private nextToken: string | null = null;
  private tokenRetries = 0;
  private refreshing = false;
  private authFailure: { code: string; message: string } | null = null;
  /** The server said the token expired; a 4401 close that follows is about that. */
  private expired = false;
  private maxBytes: number;
  private attempts = 0;
  private retryAfter: number | null = null;
  private heartbeatMs = 25_000;
  private lastHeard = 0;
  private inFlight: PendingWrite | null = null;
  private inFlightFrame: string | Uint8Array | null = null;
  private internalRetries = 0;
  private reauthSeq = 0;
  /** Bumped by close() and a fresh connect(): async steps of an older run stop when they see it changed. */
  private gen = 0;
  private pendingConnected: ClientEventArgs<S, 'connected'>[0] | null = null;
  private readonly timers: { reconnect?: Timer; refresh?: Timer; heartbeat?: Timer; ack?: Timer; retry?: Timer } = {};

  /**
   * @throws SessionError `no_websocket` when neither `options.WebSocket` nor `globalThis.WebSocket` exists;
   *   `invalid_argument` for a missing token, a missing or malformed device id, or a URL that is not ws(s)://.
   */
  constructor(options: SessionClientOptions) {
    super();
    this.opts = options;
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket;
    if (!WS) {
      throw new SessionError(ClientErrorCode.NO_WEBSOCKET, 'no WebSocket implementation: pass options.WebSocket (in Node: the `ws` package)');
    }
    this.WS = WS;
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, `url is not a URL: ${String(options.url)}`);
    }
    if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, 'url must start with ws:// or wss://');
    if (!isValidId(options.deviceId)) {
      throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, 'deviceId must be 1-128 characters of well-formed Unicode (no lone surrogates)');
    }
    if (typeof options.token !== 'function' && (typeof options.token !== 'string' || options.token === '')) {
      throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, 'token must be a string or a function returning one');
    }
    if (options.codec === ('proto' as unknown)) {
      throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, "codec 'proto': import { protoCodec } from '@harmonyflow/client/proto' and pass it");
    }
    this.codec = options.codec && options.codec !== 'json' ? options.codec : jsonCodec;
    this.sessionId = options.sessionId?.toLowerCase();
    this.maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    this.httpBase = (options.httpUrl ?? httpBaseFromWsUrl(options.url)).replace(/\/+$/, '');
    this.outbox = new Outbox(options.storage ?? new MemoryStorage(), options.storagePrefix ?? 'harmonyflow:outbox', options.deviceId, this.sessionId, (e) => this.emit('error', e));
    // A failed read was reported by the outbox; write() and open() read again.
    this.loadOutbox().catch(() => undefined);
  }

  /** `idle` (never connected), `connecting`, `connected`, `reconnecting`, or `closed` (by `close()` or a refusal). */
  get status(): ConnectionStatus {
    return this._status;
  }

  /** Writes not acknowledged yet (including those left in storage by an earlier client). */
  get pendingWrites(): number {
    return this.outbox.size;
  }

  /**
   * Connects (or reconnects after `close()`) and resolves once authenticated and holding the
   * session's state. Network failures are retried with backoff (the promise waits); a refused
   * AUTH (`invalid_token`, `forbidden`, `quota_exceeded`, …) rejects with that code, after
   * trying a different token from `token()` when there is one.
   */
  connect(): Promise<void> {
    if (this._status === 'connected') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this._status === 'idle' || this._status === 'closed') {
      this.gen++;
      this.attempts = 0;
      this.tokenRetries = 0;
      this.setStatus('connecting');
      void this.open();
    }
    return p;
  }

  /**
   * Closes for good (until `connect()` is called again). Unacknowledged writes reject with
   * `closed` but stay in storage: the next client (or `connect()`) sends them. The promise
   * settles once storage writes already under way are done, so a new client on the same
   * storage may start then.
   */
  close(): Promise<void> {
    if (this._status !== 'closed') {
      this.gen++;
      this.setStatus('closed');
      this.clearTimers();
      const ws = this.ws;
      this.detach();
      ws?.close(1000, 'client closed');
      this.failAll(new SessionError(ClientErrorCode.CLOSED, 'client closed'));
    }
    return this.outbox.idle();
  }

  /** Sets `key` to `value`. */
  set<K extends keyof S & string>(key: K, value: S[K], options: WriteOptions = {}): Promise<WriteResult> {
    return this.write(key, 'SET', value, options);
  }

  /** Removes `key`. */
  delete<K extends keyof S & string>(key: K, options: WriteOptions = {}): Promise<WriteResult> {
    return this.write(key, 'DELETE', undefined, options);
  }

  /**
   * Adds `delta` (default 1) to the number at `key` (a missing key counts as 0); resolves with the
   * resulting `value`. Rejects with `invalid_argument` unless `delta` is a finite number.
   */
  increment<K extends NumericKeys<S>>(key: K, delta = 1, options: WriteOptions = {}): Promise<WriteResult> {
    return this.write(key, 'INCREMENT', delta, options);
  }

  /** The session's devices, cluster-wide (`GET /session/:id/devices`). */
  async devices(): Promise<DeviceInfo[]> {
    const body = await this.http<{ devices: DeviceInfo[] }>('GET', `/session/${this.requireSession()}/devices`);
    return body.devices;
  }

  /** Offers the session to `targetDevice` (`POST /session/:id/handoff`); the target is told with HANDOFF_REQUESTED. */
  requestHandoff(targetDevice: string): Promise<{ token: string; expires_at: string; source_device: string; target_device: string }> {
    return this.http('POST', `/session/${this.requireSession()}/handoff`, { source_device: this.opts.deviceId, target_device: targetDevice });
  }

  /**
   * Redeems a handoff token (`GET /session/:id/handoff/:token`): single use (`handoff_token_used`
   * the second time, `not_found` once expired). Returns the state and version it was made with.
   */
  acceptHandoff(token: string): Promise<{ valid: true; state_data: Partial<S>; version: number; source_device: string; target_device: string }> {
    return this.http('GET', `/session/${this.requireSession()}/handoff/${encodeURIComponent(token)}`);
  }

  /**
   * Settles a conflict (`POST /session/conflict/resolve`): `server_wins` keeps the server's state,
   * `client_wins` replaces it with `clientState`, `merge` overlays `clientState` key by key.
   * Connected devices, this one included, receive the result as a snapshot.
   */
  resolveConflict(strategy: 'server_wins' | 'client_wins' | 'merge', clientState: Partial<S>): Promise<{ state_data: Partial<S>; version: number; strategy: string }> {
    return this.http('POST', '/session/conflict/resolve', {
      session_id: this.requireSession(), device_id: this.opts.deviceId, client_version: this.version, client_state: clientState, resolution_strategy: strategy,
    });
  }

  // ── writes ────────────────────────────────────────────────────────────────

  private async write(key: string, op: WriteOperation, value: JsonValue | undefined, options: WriteOptions): Promise<WriteResult> {
    // The server would refuse it too, but only after it had been saved and had waited its turn.
    const keyProblem = stateKeyProblem(key);
    if (keyProblem !== null) throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, keyProblem);
    // JSON has no NaN or Infinity: either would go out as null, which the server counts as 1.
    if (op === 'INCREMENT' && !Number.isFinite(value)) throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, `delta must be a finite number, not ${String(value)}`);
    if (this._status === 'closed') throw new SessionError(ClientErrorCode.CLOSED, 'client closed');
    const fields = { k: key, op, v: value, b: options.baseVersion };
    const bytes = frameBytes(this.encodeWrite({ ...fields, m: WIDEST_ID, c: 'x'.repeat(24) }));
    if (bytes > this.maxBytes) {
      throw new SessionError(ClientErrorCode.PAYLOAD_TOO_LARGE, `write is ${bytes} bytes, above the server's limit of ${this.maxBytes}`, { bytes, limit: this.maxBytes });
    }
    await this.loadOutbox();
    // close() may have run during the read: it rejected what was queued then, this was not yet.
    if (this.status === 'closed') throw new SessionError(ClientErrorCode.CLOSED, 'client closed before the write was queued');
    const entry = this.outbox.add(fields);
    const result = new Promise<WriteResult>((resolve, reject) => {
      entry.settle = { resolve: resolve as (r: unknown) => void, reject };
    });
    // close() may reject it while the save below is pending, before the caller holds it.
    result.catch(() => undefined);
    this.emit('queue', this.outbox.size);
    try {
      await this.outbox.save();
    } catch (err) {
      entry.settle = undefined;
      this.outbox.remove(entry).catch((e: Error) => this.reportStorage(e));
      this.emit('queue', this.outbox.size);
      throw new SessionError(ClientErrorCode.STORAGE_FAILED, `could not save the write: ${(err as Error).message}`);
    }
    entry.durable = true;
    this.pump();
    return result;
  }

  /** The stored queue in memory; the first time it is, `queue` tells the app what an earlier client left. */
  private loadOutbox(): Promise<void> {
    const p = this.outbox.load();
    if (p !== this.outboxLoad) {
      this.outboxLoad = p;
      p.then(() => {
        if (this.outbox.size > 0) this.emit('queue', this.outbox.size);
      }, () => undefined); // the rejection goes to whoever awaits p
    }
    return p;
  }

  private encodeWrite(w: Pick<PendingWrite, 'k' | 'op' | 'v' | 'b' | 'm' | 'c'>): string | Uint8Array {
    const payload: Record<string, unknown> = { key: w.k, operation: w.op };
    if (w.v !== undefined) payload.value = w.v;
    if (w.b !== undefined) payload.base_version = w.b;
    if (w.m > 0) payload.mutation_id = w.m;
    return this.codec.encode({ type: MessageType.STATE_UPDATE, timestamp: Date.now(), correlation_id: w.c, payload });
  }

  /**
   * Sends the head of the queue if nothing is in flight. One at a time, in mutation_id order: the
   * server treats any id not above the highest it has processed as a duplicate, so a write
   * overtaking an earlier one that then failed transiently would make the earlier one vanish.
   */
  private pump(): void {
    if (this.phase !== 'live' || this.inFlight || !this.ws) return;
    const e = this.outbox.head();
    if (!e || !e.durable || e.m === 0) return;
    const frame = this.encodeWrite(e);
    const bytes = frameBytes(frame);
    if (bytes > this.maxBytes) {
      // Queued under a larger limit than this server's: it can never be sent here.
      this.refuse(e, new SessionError(ClientErrorCode.PAYLOAD_TOO_LARGE, `write is ${bytes} bytes, above the server's limit of ${this.maxBytes}`, { bytes, limit: this.maxBytes }));
      return;
    }
    this.inFlight = e;
    this.inFlightFrame = frame;
    e.sentAt = Math.min(e.sentAt ?? Infinity, this.mark);
    this.transmit(frame);
  }

  private transmit(frame: string | Uint8Array): void {
    clearTimeout(this.timers.ack);
    this.ws?.send(frame);
    this.timers.ack = setTimeout(() => this.resendInFlight(), this.opts.ackTimeoutMs ?? 10_000);
  }

  /** Same frame, same ids: the server acknowledges again whether or not it had applied it. */
  private resendInFlight(): void {
    if (this.phase === 'live' && this.inFlight && this.inFlightFrame) this.transmit(this.inFlightFrame);
  }

  private onAck(p: Record<string, unknown>, corr: string | undefined): void {
    const e = this.inFlight;
    if (!e || e.c !== corr) return; // a late second ACK of a re-sent write
    this.settleInFlight();
    const version = p.version as number;
    const result: WriteResult = { version };
    if (p.value !== undefined) result.value = p.value as JsonValue;
    if (p.duplicate === true) result.duplicate = true;
    else {
      this.acked.add(version);
      this.advanceMark();
      const value = e.op === 'DELETE' ? undefined : e.op === 'INCREMENT' ? (p.value as JsonValue) : e.v;
      if (version > this.version) this.version = version;
      // An old server's INCREMENT ACK carries no resulting value: the mirror learns it from the next snapshot.
      if (!(e.op === 'INCREMENT' && value === undefined)) this.setKey(e.k, value, version);
      this.emit('state', this.state, this.version);
    }
    this.outbox.remove(e).catch((err: Error) => this.reportStorage(err));
    this.emit('queue', this.outbox.size);
    e.settle?.resolve(result);
    this.pump();
  }

  /** A write the server (or the size check) refused for good: drop it, reject its promise, go on. */
  private refuse(e: PendingWrite, err: SessionError): void {
    if (this.inFlight === e) this.settleInFlight();
    this.outbox.remove(e).catch((x: Error) => this.reportStorage(x));
    this.emit('queue', this.outbox.size);
    if (e.settle) e.settle.reject(err);
    else this.emit('error', err); // queued by an earlier client: nobody else would hear of it
    this.pump();
  }

  private settleInFlight(): void {
    clearTimeout(this.timers.ack);
    clearTimeout(this.timers.retry);
    this.inFlight = null;
    this.inFlightFrame = null;
    this.internalRetries = 0;
  }

  private retryInFlight(): void {
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.ack);
    const n = ++this.internalRetries;
    this.timers.retry = setTimeout(() => this.resendInFlight(), Math.min(5000, 100 * 2 ** Math.min(n, 6)));
  }

  private failAll(err: SessionError): void {
    this.settleInFlight();
    for (const e of this.outbox.entries) {
      const s = e.settle;
      e.settle = undefined;
      s?.reject(err);
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  // ── connection ────────────────────────────────────────────────────────────

  private setStatus(s: ConnectionStatus): void {
    if (this._status === s) return;
    this._status = s;
    this.emit('status', s);
  }

  private async open(): Promise<void> {
    const gen = this.gen;
    try {
      await this.loadOutbox();
    } catch {
      // Reported by the outbox. Nothing is sent before the stored queue is known: its writes come first.
      if (gen === this.gen) this.scheduleReconnect();
      return;
    }
    let token: string;
    try {
      token = this.nextToken ?? (await this.fetchToken());
    } catch (err) {
      if (gen !== this.gen) return;
      this.emit('error', err as SessionError);
      this.scheduleReconnect();
      return;
    }
    this.nextToken = null;
    // close() (and maybe connect()) ran while we awaited: that run owns the connection now.
    if (gen !== this.gen || this.ws) return;
    this.token = token;
    this.tokenAt = Date.now();
    let ws: WebSocketLike;
    try {
      ws = new this.WS(this.opts.url, this.codec.name);
    } catch (err) {
      this.emit('error', new SessionError(ClientErrorCode.DISCONNECTED, `could not open a WebSocket: ${(err as Error).message}`));
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    this.phase = 'authing';
    this.stateReady = false;
    this.outboxReady = false;
    this.authFailure = null;
    this.expired = false;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      const payload: Record<string, unknown> = {
        token, device_id: this.opts.deviceId, session_id: this.sessionId, device_type: this.opts.deviceType,
        device_name: this.opts.deviceName, os_version: this.opts.osVersion, app_version: this.opts.appVersion,
      };
      if (this.everLive) {
        payload.last_version = this.resumeVersion();
        if (this.epoch !== undefined) payload.last_epoch = this.epoch;
      }
      this.sendEnv({ type: MessageType.AUTH, timestamp: Date.now(), payload });
    };
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.onFrame(ev.data);
    };
    ws.onerror = () => undefined; // onclose follows and decides
    ws.onclose = (ev) => {
      if (this.ws === ws) void this.onClose(ev.code, ev.reason);
    };
  }

  private async fetchToken(): Promise<string> {
    const src = this.opts.token;
    if (typeof src === 'string') return src;
    let t: unknown;
    try {
      t = await src();
    } catch (err) {
      throw new SessionError(ClientErrorCode.TOKEN_FAILED, `token() failed: ${(err as Error)?.message ?? String(err)}`);
    }
    if (typeof t !== 'string' || t === '') throw new SessionError(ClientErrorCode.TOKEN_FAILED, 'token() must return a non-empty string');
    return t;
  }

  private sendEnv(env: Envelope): void {
    this.ws?.send(this.codec.encode(env));
  }

  /** Resume from here: below any write whose ACK never came, so its effect is replayed too. */
  private resumeVersion(): number {
    let v = this.mark;
    for (const e of this.outbox.entries) if (e.sentAt !== undefined && e.sentAt < v) v = e.sentAt;
    return v;
  }

  private detach(): void {
    const ws = this.ws;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => undefined;
    this.ws = null;
    this.phase = null;
    this.settleInFlight();
  }

  private async onClose(code: number, reason: string): Promise<void> {
    const gen = this.gen;
    const failure = this.authFailure ?? (this.expired && code === CloseCode.AUTH ? { code: ErrorCode.TOKEN_EXPIRED, message: 'token expired' } : null);
    const inFlight = this.inFlight;
    this.detach();
    clearTimeout(this.timers.heartbeat);
    clearTimeout(this.timers.refresh);
    if (this._status === 'closed') return;
    if (code === CloseCode.TOO_BIG && inFlight) {
      // The server's limit is below what we assumed: this write can never pass; the rest can.
      this.refuse(inFlight, new SessionError(ClientErrorCode.PAYLOAD_TOO_LARGE, 'the server refused the write as too large (close 1009)'));
    }
    const fatal = await this.fatalError(code, reason, failure);
    if (gen !== this.gen) return; // close() was called while token() ran
    this.emit('disconnected', { code, reason, willReconnect: fatal === null });
    if (fatal) {
      this.setStatus('closed');
      this.clearTimers();
      this.failAll(fatal);
      this.emit('error', fatal);
      return;
    }
    this.setStatus('reconnecting');
    this.scheduleReconnect();
  }

  /**
   * Whether a closed connection is the end: null to reconnect, or the error to stop with.
   * Refused tokens end it unless `token()` now gives a different one (tried a few times in a
   * row); kicks and protocol abuse end it; everything else — network loss, draining nodes,
   * 1009, rate limits, server trouble during AUTH — is retried.
   */
  private async fatalError(code: number, reason: string, failure: { code: string; message: string } | null): Promise<SessionError | null> {
    if (failure && !TRANSIENT_AUTH.has(failure.code) && !TOKEN_AUTH.has(failure.code)) {
      return new SessionError(failure.code, failure.message, { close_code: code }); // quota_exceeded, invalid_message, …
    }
    const tokenRefused = (failure && TOKEN_AUTH.has(failure.code)) || code === CloseCode.AUTH || code === CloseCode.FORBIDDEN;
    if (tokenRefused && !(failure && TRANSIENT_AUTH.has(failure.code))) {
      const err = new SessionError(
        failure?.code ?? (code === CloseCode.FORBIDDEN ? ErrorCode.FORBIDDEN : ErrorCode.INVALID_TOKEN),
        failure?.message ?? (reason || `connection refused (${code})`),
        { close_code: code },
      );
      if (typeof this.opts.token !== 'function' || this.tokenRetries >= MAX_TOKEN_RETRIES) return err;
      let fresh: string;
      try {
        fresh = await this.fetchToken();
      } catch {
        return err;
      }
      if (fresh === this.token) return err;
      this.tokenRetries++;
      this.nextToken = fresh;
      this.retryAfter = 0;
      return null;
    }
    if (code === CloseCode.KICKED) return new SessionError(ClientErrorCode.KICKED, 'this device was removed from the session', { close_code: code });
    if (code === CloseCode.PROTOCOL_ABUSE) return new SessionError(ClientErrorCode.PROTOCOL_ERROR, reason || 'closed for protocol abuse', { close_code: code });
    if (this.opts.reconnect?.enabled === false) return new SessionError(ClientErrorCode.DISCONNECTED, `connection closed (${code} ${reason})`, { close_code: code });
    return null;
  }

  private scheduleReconnect(): void {
    if (this._status === 'closed') return;
    const min = this.opts.reconnect?.minDelayMs ?? 100;
    const max = this.opts.reconnect?.maxDelayMs ?? 10_000;
    const ceiling = Math.min(max, min * 2 ** Math.min(this.attempts++, 16));
    const delay = this.retryAfter ?? Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
    this.retryAfter = null;
    clearTimeout(this.timers.reconnect);
    this.timers.reconnect = setTimeout(() => void this.open(), delay);
  }

  private clearTimers(): void {
    for (const t of Object.values(this.timers)) clearTimeout(t);
  }

  // ── frames ────────────────────────────────────────────────────────────────

  private onFrame(data: unknown): void {
    const r = this.codec.decode(typeof data === 'string' ? data : new Uint8Array(data as ArrayBuffer));
    if (!r.ok) {
      this.emit('error', new SessionError(r.code, `undecodable frame from the server: ${r.message}`));
      return;
    }
    this.lastHeard = Date.now();
    const env = r.envelope;
    const p = env.payload as Record<string, unknown>;
    switch (env.type) {
      case MessageType.AUTH_SUCCESS:
        if (this.phase === 'authing') this.onAuthenticated(p as unknown as AuthSuccessPayload);
        else {
          this.expired = false; // a token refresh on the live connection was accepted
          this.scheduleRefresh();
        }
        return;
      case MessageType.AUTH_FAILURE:
        this.authFailure = { code: String(p.code), message: String(p.message ?? '') };
        return;
      case MessageType.SNAPSHOT_RESPONSE:
        this.applySnapshot(p);
        if (this.phase === 'syncing' && !this.stateReady) {
          this.stateReady = true;
          this.goLive();
        }
        return;
      case MessageType.STATE_UPDATE:
        this.applyUpdate(p);
        return;
      case MessageType.STATE_UPDATE_ACK:
        this.onAck(p, (p.correlation_id as string | undefined) ?? env.correlation_id);
        return;
      case MessageType.ERROR:
        this.onError(p, (p.correlation_id as string | undefined) ?? env.correlation_id);
        return;
      case MessageType.DEVICE_JOINED: {
        const device = p.device as DeviceInfo;
        this.deviceList = [...this.deviceList.filter((d) => d.device_id !== device.device_id), device];
        this.emit('device', { type: 'joined', device });
        return;
      }
      case MessageType.DEVICE_LEFT: {
        const id = String(p.device_id);
        const reason = String(p.reason);
        this.deviceList = reason === 'kicked'
          ? this.deviceList.filter((d) => d.device_id !== id)
          : this.deviceList.map((d) => (d.device_id === id ? { ...d, status: 'offline' } : d));
        this.emit('device', { type: 'left', deviceId: id, reason });
        return;
      }
      case MessageType.DEVICE_LIST:
        if (Array.isArray(p.devices)) this.deviceList = p.devices as DeviceInfo[];
        return;
      case MessageType.BROADCAST:
        this.emit('broadcast', { message: String(p.message), type: String(p.type) });
        return;
      case MessageType.ADMIN_UPDATE:
        this.emit('admin', p);
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
        return; // HEARTBEAT_ACK: being heard from is all it is for
    }
  }

  private onAuthenticated(p: AuthSuccessPayload): void {
    const ws = this.ws;
    this.phase = 'syncing';
    this.sessionId = p.session_id;
    this.tokenRetries = 0;
    this.attempts = 0;
    if (typeof p.max_message_bytes === 'number' && p.max_message_bytes > 0) this.maxBytes = p.max_message_bytes;
    if (typeof p.heartbeat_interval_ms === 'number' && p.heartbeat_interval_ms > 0) this.heartbeatMs = p.heartbeat_interval_ms;
    if (Array.isArray(p.devices)) this.deviceList = p.devices;
    if (p.resumed === true) this.stateReady = true; // the missed updates follow; no snapshot
    this.startHeartbeat();
    this.scheduleRefresh();
    const last = typeof p.last_mutation_id === 'number' ? p.last_mutation_id : null;
    this.prepareOutbox(p.session_id, last, p.version).then(
      () => {
        if (this.ws !== ws) return;
        this.outboxReady = true;
        this.goLive({ sessionId: p.session_id, resumed: p.resumed === true, nodeId: String(p.node_id), epoch: p.epoch });
      },
      (err: Error) => {
        // Without a saved, reconciled queue nothing may be sent: try again on a new connection.
        this.reportStorage(err);
        if (ws && this.ws === ws) {
          ws.close(1000, 'storage failed');
          void this.onClose(1006, 'storage failed');
        }
      },
    );
  }

  private async prepareOutbox(sessionId: string, lastMutationId: number | null, version: number): Promise<void> {
    await this.outbox.bind(sessionId, lastMutationId ?? 0);
    // Also without last_mutation_id (that server dedups by correlation id only): the queue is marked as being sent from.
    const done = await this.outbox.reconcile(lastMutationId);
    if (done.length > 0) this.emit('queue', this.outbox.size);
    for (const e of done) e.settle?.resolve({ version, duplicate: true } satisfies WriteResult);
  }

  /** Live once both the state and the queue are in place; `info` is kept from AUTH_SUCCESS until then. */
  private goLive(info?: ClientEventArgs<S, 'connected'>[0]): void {
    if (info) this.pendingConnected = info;
    if (this.phase !== 'syncing' || !this.stateReady || !this.outboxReady) return;
    this.phase = 'live';
    this.everLive = true;
    this.setStatus('connected');
    if (this.pendingConnected) this.emit('connected', this.pendingConnected);
    this.pendingConnected = null;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve();
    this.pump();
  }

  private onError(p: Record<string, unknown>, corr: string | undefined): void {
    const code = String(p.code);
    const err = new SessionError(code, String(p.message ?? ''), p);
    if (code === ErrorCode.TOKEN_EXPIRED) {
      this.expired = true;
      void this.refreshToken();
      return;
    }
    const e = this.inFlight;
    if (e && (e.c === corr || (corr === undefined && code === ErrorCode.RATE_LIMITED))) {
      // Rate-limit ERRORs name no frame: the dropped one may be ours, and a re-send is harmless.
      if (RETRYABLE.has(code) && (code !== ErrorCode.INTERNAL || this.internalRetries < MAX_INTERNAL_RETRIES)) this.retryInFlight();
      else this.refuse(e, err);
      return;
    }
    this.emit('error', err);
  }

  // ── state mirror ──────────────────────────────────────────────────────────

  private get mutableState(): Record<string, JsonValue> {
    return this.state as Record<string, JsonValue>;
  }

  private applySnapshot(p: Record<string, unknown>): void {
    const epoch = typeof p.epoch === 'string' ? p.epoch : undefined;
    const version = p.version as number;
    const next: Record<string, JsonValue> = Object.assign(Object.create(null), p.state_data as JsonObject);
    const sameEpoch = epoch === this.epoch || epoch === undefined || this.epoch === undefined;
    if (sameEpoch) {
      // Keys we know at a newer version than the snapshot (our own ACKs) keep what we know.
      for (const [k, kv] of this.keyVersions) {
        if (kv <= version) this.keyVersions.delete(k); // the snapshot covers it
        else if (k in this.mutableState) next[k] = this.mutableState[k];
        else delete next[k];
      }
      for (const v of this.acked) if (v <= version) this.acked.delete(v);
      this.version = Math.max(version, ...this.keyVersions.values());
    } else {
      // A new incarnation: versions started again, nothing of the old one compares.
      this.keyVersions.clear();
      this.acked.clear();
      this.version = version;
    }
    if (epoch !== undefined) this.epoch = epoch;
    this.state = next as Partial<S>;
    this.floor = version;
    this.mark = version;
    this.advanceMark();
    this.emit('state', this.state, this.version);
  }

  private applyUpdate(p: Record<string, unknown>): void {
    const version = p.version as number;
    if (version > this.mark) this.mark = version;
    this.advanceMark();
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

  private advanceMark(): void {
    while (this.acked.delete(this.mark + 1)) this.mark++;
    for (const v of this.acked) if (v <= this.mark) this.acked.delete(v);
  }

  /** Applies a key's value at `version` unless something newer for that key is already here. */
  private setKey(key: string, value: JsonValue | undefined, version: number): void {
    if (version <= this.floor || (this.keyVersions.get(key) ?? 0) >= version) return;
    this.keyVersions.set(key, version);
    if (value === undefined) delete this.mutableState[key];
    else this.mutableState[key] = value;
  }

  // ── tokens and liveness ───────────────────────────────────────────────────

  private scheduleRefresh(): void {
    clearTimeout(this.timers.refresh);
    if (typeof this.opts.token !== 'function' || !this.token) return;
    const delay = refreshDelayMs(this.token, Date.now(), this.opts.refreshBeforeExpiryMs ?? 60_000, this.tokenAt);
    if (delay === null) return;
    // At least a second apart, whatever the token says: never a refresh loop.
    this.timers.refresh = setTimeout(() => void this.refreshToken(), Math.max(1000, delay));
  }

  /** Asks `token()` for a new token and re-AUTHs on the live connection (no reconnect). */
  private async refreshToken(): Promise<void> {
    if (typeof this.opts.token !== 'function' || this.refreshing) return;
    this.refreshing = true;
    let fresh: string;
    try {
      fresh = await this.fetchToken();
    } catch (err) {
      this.emit('error', err as SessionError);
      this.retryRefreshSoon();
      return;
    } finally {
      this.refreshing = false;
    }
    if (this.phase !== 'live' || !this.ws) return; // the next connection fetches its own
    if (fresh === this.token) {
      this.retryRefreshSoon(); // the source has nothing newer yet
      return;
    }
    this.token = fresh;
    this.tokenAt = Date.now();
    this.sendEnv({
      type: MessageType.AUTH, timestamp: Date.now(), correlation_id: `reauth-${++this.reauthSeq}`,
      payload: { token: fresh, device_id: this.opts.deviceId, session_id: this.sessionId },
    });
  }

  private retryRefreshSoon(): void {
    clearTimeout(this.timers.refresh);
    this.timers.refresh = setTimeout(() => void this.refreshToken(), 2000);
  }

  /**
   * HEARTBEAT every interval; a connection that has been silent for two intervals (plus slack)
   * is dead even if TCP has not noticed (a dropped mobile link): drop it and reconnect.
   */
  private startHeartbeat(): void {
    clearTimeout(this.timers.heartbeat);
    this.lastHeard = Date.now();
    const tick = () => {
      const ws = this.ws;
      if (!ws || this.phase === null) return;
      if (Date.now() - this.lastHeard > 2 * this.heartbeatMs + 5000) {
        ws.close(1000, 'heartbeat timeout');
        void this.onClose(1006, 'heartbeat timeout');
        return;
      }
      this.sendEnv({ type: MessageType.HEARTBEAT, timestamp: Date.now(), payload: { client_time: Date.now() } });
      this.timers.heartbeat = setTimeout(tick, this.heartbeatMs);
    };
    this.timers.heartbeat = setTimeout(tick, this.heartbeatMs);
  }

  // ── HTTP ──────────────────────────────────────────────────────────────────

  private requireSession(): string {
    if (!this.sessionId) throw new SessionError(ClientErrorCode.NO_SESSION, 'session id unknown: pass sessionId or connect() first');
    return this.sessionId;
  }

  private async http<T>(method: string, path: string, body?: unknown): Promise<T> {
    const f = this.opts.fetch ?? (globalThis as { fetch?: FetchLike }).fetch;
    if (!f) throw new SessionError(ClientErrorCode.INVALID_ARGUMENT, 'no fetch implementation: pass options.fetch');
    const token = this.token && this.phase === 'live' ? this.token : await this.fetchToken();
    return requestJson<T>(f, this.httpBase, method, path, token, body);
  }

  private reportStorage(err: Error): void {
    this.emit('error', err instanceof SessionError ? err : new SessionError(ClientErrorCode.STORAGE_FAILED, err.message));
  }
}

type Timer = ReturnType<typeof setTimeout>;
type ClientEventArgs<S, K extends keyof ClientEvents<S>> = Parameters<ClientEvents<S>[K]>;
