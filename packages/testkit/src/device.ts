import WebSocket from 'ws';
import { MessageType, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO, codecFor, type Envelope } from '@harmonyflow/protocol';

export interface DeviceOptions {
  /** `proto` speaks harmonyflow.v1.proto (binary); default JSON. */
  readonly codec?: 'json' | 'proto';
  /** Send no subprotocol header at all (JSON default). */
  readonly noSubprotocol?: boolean;
  /** Query string to append to the URL (for ?token=…). */
  readonly query?: Record<string, string>;
}

/** A test WebSocket client: records every frame, lets tests await frames by type or predicate. */
export class TestDevice {
  readonly frames: Envelope[] = [];
  closeCode: number | null = null;
  closeReason = '';
  private waiters: Array<() => void> = [];
  readonly closed: Promise<number>;
  private readonly codec;

  constructor(readonly socket: WebSocket, codec: 'json' | 'proto') {
    this.codec = codecFor(codec === 'proto' ? SUBPROTOCOL_PROTO : SUBPROTOCOL_JSON);
    socket.on('message', (data: Buffer, isBinary: boolean) => {
      const r = this.codec.decode(isBinary ? new Uint8Array(data) : data.toString('utf8'));
      if (!r.ok) throw new Error(`server sent an undecodable frame: ${r.message}`);
      this.frames.push(r.envelope);
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', (code: number, reason: Buffer) => {
        this.closeCode = code;
        this.closeReason = reason.toString();
        this.wake();
        resolve(code);
      });
    });
    socket.on('error', () => this.wake());
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(env: Partial<Envelope> & { type: number }): void {
    const full: Envelope = { timestamp: Date.now(), payload: {}, ...env } as Envelope;
    this.socket.send(this.codec.encode(full));
  }

  sendRaw(data: string | Buffer): void {
    this.socket.send(data);
  }

  /** Waits for the first frame (after index `from`) matching `pred`. */
  async waitFor(pred: (e: Envelope) => boolean, timeoutMs = 5000, from = 0): Promise<Envelope> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.frames.length; i++) if (pred(this.frames[i])) return this.frames[i];
      if (this.closeCode !== null) throw new Error(`socket closed (${this.closeCode} ${this.closeReason}) while waiting; frames: ${JSON.stringify(this.frames.map((f) => f.type))}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for a frame; got types ${JSON.stringify(this.frames.map((f) => f.type))}${this.errorsSeen()}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The ERROR frames' codes and first message, for a failure's text: what the server refused. */
  private errorsSeen(): string {
    const errors = this.frames.filter((f) => f.type === MessageType.ERROR).map((f) => f.payload as { code?: string; message?: string });
    if (errors.length === 0) return '';
    const codes = [...new Set(errors.map((e) => e.code))].join(', ');
    return `; ${errors.length} ERROR (${codes}), the first: ${JSON.stringify(errors[0].message)}`;
  }

  next(type: MessageType, timeoutMs = 5000, from = 0): Promise<Envelope> {
    return this.waitFor((e) => e.type === type, timeoutMs, from);
  }

  ofType(type: MessageType): Envelope[] {
    return this.frames.filter((f) => f.type === type);
  }

  /** AUTH and wait for AUTH_SUCCESS (throws on AUTH_FAILURE). */
  async auth(payload: Record<string, unknown>, timeoutMs = 5000): Promise<Envelope> {
    const from = this.frames.length;
    this.send({ type: MessageType.AUTH, payload });
    const r = await this.waitFor((e) => e.type === MessageType.AUTH_SUCCESS || e.type === MessageType.AUTH_FAILURE, timeoutMs, from);
    if (r.type === MessageType.AUTH_FAILURE) throw new Error(`AUTH_FAILURE ${JSON.stringify(r.payload)}`);
    return r;
  }

  close(): Promise<number> {
    if (this.closeCode === null) this.socket.close();
    return this.closed;
  }

  terminate(): void {
    this.socket.terminate();
  }
}

const open = new Set<TestDevice>();

/** Opens a WebSocket to a node; resolves once open. Closed by `closeAllDevices` (call in afterEach/afterAll). */
export function connectDevice(wsUrl: string, opts: DeviceOptions = {}): Promise<TestDevice> {
  const codec = opts.codec ?? 'json';
  const url = opts.query ? `${wsUrl}?${new URLSearchParams(opts.query)}` : wsUrl;
  const protocols = opts.noSubprotocol ? undefined : codec === 'proto' ? [SUBPROTOCOL_PROTO] : [SUBPROTOCOL_JSON];
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(url, protocols, { maxPayload: 64 * 1024 * 1024 });
    const dev = new TestDevice(socket, codec);
    open.add(dev);
    dev.closed.then(() => open.delete(dev));
    socket.once('open', () => resolve(dev));
    socket.once('error', reject);
    socket.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
  });
}

export async function closeAllDevices(): Promise<void> {
  await Promise.all([...open].map((d) => {
    d.terminate();
    return d.closed;
  }));
}
