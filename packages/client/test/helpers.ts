import WebSocket, { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { MessageType, type Envelope } from '@harmonyflow/protocol';
import { SessionClient, type SessionClientOptions, type StorageLike, type WebSocketFactory } from '../src';

/** The `ws` package as a WebSocketFactory that counts the sockets it opens and the frames sent on them. */
export function countingWebSocket(): { WS: WebSocketFactory; opened: () => number; sent: Envelope[] } {
  let opened = 0;
  const sent: Envelope[] = [];
  class Counting extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      opened++;
    }
    override send(data: unknown, ...rest: unknown[]): void {
      if (typeof data === 'string') sent.push(JSON.parse(data) as Envelope);
      (super.send as (...a: unknown[]) => void)(data, ...rest);
    }
  }
  return { WS: Counting as unknown as WebSocketFactory, opened: () => opened, sent };
}

const clients = new Set<SessionClient>();

/** A SessionClient on the `ws` package with short backoff; closed by `closeClients()`. */
export function sdkClient<S extends { [K in keyof S]: import('../src').JsonValue } = import('../src').JsonObject>(
  opts: Omit<SessionClientOptions, 'WebSocket'> & { WebSocket?: WebSocketFactory },
): SessionClient<S> {
  const c = new SessionClient<S>({ WebSocket: WebSocket as unknown as WebSocketFactory, reconnect: { minDelayMs: 50, maxDelayMs: 500 }, ...opts });
  clients.add(c as unknown as SessionClient);
  return c;
}

export function closeClients(): void {
  for (const c of clients) void c.close();
  clients.clear();
}

/** Storage that records every value written, to replay a moment of a crashed client. */
export class RecordingStorage implements StorageLike {
  readonly items = new Map<string, string>();
  readonly history: Array<{ key: string; value: string | null }> = [];
  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }
  async setItem(key: string, value: string): Promise<void> {
    await new Promise((r) => setImmediate(r)); // asynchronous like a real disk or IndexedDB
    this.items.set(key, value);
    this.history.push({ key, value });
  }
  removeItem(key: string): void {
    this.items.delete(key);
    this.history.push({ key, value: null });
  }
}

/** The pending writes of a stored outbox document. */
export function pendingIn(doc: string | null | undefined): Array<{ m: number; c: string; k: string; op: string; v?: unknown }> {
  return doc ? (JSON.parse(doc) as { pending: Array<{ m: number; c: string; k: string; op: string }> }).pending : [];
}

export interface FakeConn {
  readonly socket: WebSocket;
  readonly frames: Envelope[];
  send(type: MessageType, payload: Record<string, unknown>, correlationId?: string): void;
  next(type: MessageType, timeoutMs?: number): Promise<Envelope>;
}

/**
 * A scripted stand-in for a gateway, for protocol details a real node cannot be made to show on
 * demand (a 1009 close, a lost ACK, a new epoch at a chosen moment). `onConnection` runs per socket.
 */
export async function fakeServer(onConnection: (conn: FakeConn, index: number) => void): Promise<{
  url: string;
  conns: FakeConn[];
  /** The `i`-th connection (from 0), once the client has opened it. */
  conn(i: number, timeoutMs?: number): Promise<FakeConn>;
  close(): Promise<void>;
}> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const conns: FakeConn[] = [];
  wss.on('connection', (socket) => {
    const frames: Envelope[] = [];
    const waiters: Array<() => void> = [];
    const consumed = new Map<number, number>();
    socket.on('message', (data) => {
      frames.push(JSON.parse(String(data)) as Envelope);
      for (const w of waiters.splice(0)) w();
    });
    const conn: FakeConn = {
      socket,
      frames,
      send: (type, payload, correlationId) => socket.send(JSON.stringify({ type, timestamp: Date.now(), payload, correlation_id: correlationId })),
      // Frames of `type` in arrival order, each handed out once.
      next: async (type, timeoutMs = 3000) => {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const n = consumed.get(type) ?? 0;
          const ofType = frames.filter((f) => f.type === type);
          if (ofType.length > n) {
            consumed.set(type, n + 1);
            return ofType[n];
          }
          if (Date.now() > deadline) throw new Error(`no frame of type ${type}; got ${JSON.stringify(frames.map((f) => f.type))}`);
          await new Promise<void>((r) => {
            waiters.push(r);
            setTimeout(r, 50);
          });
        }
      },
    };
    conns.push(conn);
    onConnection(conn, conns.length - 1);
  });
  const port = (wss.address() as AddressInfo).port;
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    conns,
    conn: async (i, timeoutMs) => {
      await until(() => conns.length > i, timeoutMs);
      return conns[i];
    },
    close: () => new Promise<void>((resolve) => {
      for (const c of wss.clients) c.terminate();
      wss.close(() => resolve());
    }),
  };
}

/** AUTH_SUCCESS as a SPEC §10 server sends it. */
export function authSuccess(over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    session_id: '00000000-0000-4000-8000-000000000001', user_id: 'alice', device_id: 'd', node_id: 'fake', version: 0, devices: [],
    heartbeat_interval_ms: 25_000, resumed: false, epoch: 'e1', last_mutation_id: 0, max_message_bytes: 65_536, ...over,
  };
}

export const T = MessageType;

/** Answers the next AUTH with AUTH_SUCCESS (`over` replaces fields) and, unless resumed, a snapshot. */
export async function accept(conn: FakeConn, over: Record<string, unknown> = {}, state: Record<string, unknown> = {}): Promise<void> {
  const auth = await conn.next(T.AUTH);
  const ok = authSuccess({ device_id: auth.payload.device_id, ...over });
  conn.send(T.AUTH_SUCCESS, ok);
  if (ok.resumed !== true) conn.send(T.SNAPSHOT_RESPONSE, { session_id: ok.session_id, version: ok.version, state_data: state, updated_at: '', epoch: ok.epoch });
}

export function ack(conn: FakeConn, write: { correlation_id?: string; payload: Record<string, unknown> }, version: number, extra: Record<string, unknown> = {}): void {
  conn.send(T.STATE_UPDATE_ACK, { correlation_id: write.correlation_id, version, mutation_id: write.payload.mutation_id, ...extra }, write.correlation_id);
}

/**
 * Expects the next STATE_UPDATEs on `conn` to be these writes, in order — [key, mutation id,
 * version the fake server ACKs, extra ACK payload] — and ACKs each.
 */
export async function expectWrites(conn: FakeConn, writes: Array<[string, number, number, Record<string, unknown>?]>): Promise<void> {
  for (const [key, mutationId, version, extra] of writes) {
    const w = await conn.next(T.STATE_UPDATE);
    expect(w.payload).toMatchObject({ key, mutation_id: mutationId });
    ack(conn, w, version, extra);
  }
}

export async function until(check: () => boolean, ms = 4000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
