import { encodeUpdateFrame, MessageType as T, type Envelope } from '@harmonyflow/protocol';
import { eventually } from '@harmonyflow/testkit';
import type { Bus } from '../src/bus/types';
import { StoreUnavailableError } from '../src/errors';
import { Hub } from '../src/hub';
import type { Logger } from '../src/log';
import { Metrics } from '../src/metrics';
import type { SessionStore, Snapshot, UpdatesSince } from '../src/store/types';
import { newConn, type Conn, type WS } from '../src/ws/conn';
import { storeValue } from '../src/store/valueCodec';

// Unit level: a hub over a scripted store, a bus the test drives and sockets that record frames,
// for the catch-up cases a live store cannot be made to produce on demand.

const SID = 'aaaaaaaa-0000-4000-8000-000000000001';
const EPOCH = 'epoch-one-0000';

function frame(version: number, originConn = 999): Uint8Array {
  return encodeUpdateFrame({
    sessionId: SID, version, originNode: 'other-node', originConn, deviceId: 'dev', correlationId: `c${version}`,
    op: 'set', key: 'k', value: storeValue(String(version)), delta: 0, fields: [], deleted: [], updatedAt: 1_700_000_000_000 + version, epoch: EPOCH,
  });
}

function snapshot(version: number): Snapshot {
  return { sessionId: SID, userId: 'alice', version, epoch: EPOCH, state: { k: version }, deviceId: null, appVersion: null, createdAt: 1, updatedAt: 2, expiresAt: 3 };
}

interface Sent {
  env: Envelope;
  /** Inside which ws.cork call (0: none). */
  cork: number;
}

class FakeSocket {
  readonly sent: Sent[] = [];
  ended: number | null = null;
  private corks = 0;
  private inCork = 0;
  constructor(readonly c: Conn) {}
  getUserData() {
    return { c: this.c };
  }
  send(data: string | Uint8Array): number {
    if (this.c.closed) throw new Error('send on a closed socket');
    this.sent.push({ env: JSON.parse(String(data)) as Envelope, cork: this.inCork });
    return 1;
  }
  cork(fn: () => void): void {
    const outer = this.inCork;
    if (outer === 0) this.inCork = ++this.corks;
    try {
      fn();
    } finally {
      this.inCork = outer;
    }
  }
  end(code: number): void {
    if (this.c.closed) throw new Error('end on a closed socket');
    this.ended = code;
    this.c.closed = true;
  }
  getBufferedAmount(): number {
    return 0;
  }
  subscribe(): boolean {
    return true;
  }
  types(): number[] {
    return this.sent.map((s) => s.env.type);
  }
  versions(): number[] {
    return this.sent.filter((s) => s.env.type === T.STATE_UPDATE || s.env.type === T.SNAPSHOT_RESPONSE).map((s) => s.env.payload.version as number);
  }
}

function deferred<V>() {
  let resolve!: (v: V) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<V>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function setup() {
  const store = {
    updatesSince: jest.fn<Promise<UpdatesSince | null>, [string, number, string | null]>(),
    get: jest.fn<Promise<Snapshot | null>, [string]>(),
    head: jest.fn(),
  };
  let onFrame: (data: Uint8Array) => void = () => {};
  const bus = {
    onFrame: (h: (data: Uint8Array) => void) => (onFrame = h),
    onResubscribed: () => {},
    subscribe: async () => {},
    unsubscribe: async () => {},
  } as unknown as Bus;
  const log = { warn: () => {}, info: () => {}, error: () => {}, debug: () => {} } as unknown as Logger;
  const metrics = new Metrics();
  const hub = new Hub(bus, store as unknown as SessionStore, metrics, log, { instance: 'this-node', slowConsumerBytes: 1 << 20, trackSession: async () => {} });
  async function socket(): Promise<FakeSocket> {
    const c = newConn(false, null, Date.now(), 10);
    const s = new FakeSocket(c);
    c.ws = s as unknown as WS;
    c.authed = true;
    c.sessionId = SID;
    await hub.join(c.ws);
    return s;
  }
  return { hub, store, metrics, socket, publish: (data: Uint8Array) => onFrame(data) };
}

describe('hub catch-up', () => {
  it('replays a log that covers the gap: resumed, versions afterVersion+1 … in order', async () => {
    const { hub, store, socket } = setup();
    store.updatesSince.mockResolvedValue({ epoch: EPOCH, frames: [frame(3), frame(4), frame(5)] });
    const s = await socket();
    const at = await hub.catchUp(s.c.ws!, 2, EPOCH);
    expect(at).toEqual({ resumed: true, version: 5, epoch: EPOCH });
    expect(s.versions()).toEqual([3, 4, 5]);
    expect(store.get).not.toHaveBeenCalled();
  });

  it.each([
    ['a version missing in the middle', () => [frame(3), frame(5)]],
    ['the first logged version past afterVersion+1', () => [frame(4), frame(5)]],
    ['an entry that does not decode', () => [frame(3), new Uint8Array([0xc1, 0xff]), frame(5)]],
  ])('a log with a hole (%s) is not a resume: one snapshot, resumed:false', async (_name, frames) => {
    const { hub, store, socket } = setup();
    store.updatesSince.mockResolvedValue({ epoch: EPOCH, frames: frames() });
    store.get.mockResolvedValue(snapshot(5));
    const s = await socket();
    const before = jest.fn();
    const at = await hub.catchUp(s.c.ws!, 2, EPOCH, before);
    expect(at).toEqual({ resumed: false, version: 5, epoch: EPOCH });
    expect(before).toHaveBeenCalledWith({ resumed: false, version: 5, epoch: EPOCH });
    expect(s.types()).toEqual([T.SNAPSHOT_RESPONSE]);
    expect(s.sent[0].env.payload).toMatchObject({ version: 5, state_data: { k: 5 } });
    expect(s.c.lastVersion).toBe(5);
  });

  it('a SNAPSHOT_REQUEST that arrives during a catch-up is answered once it finishes', async () => {
    const { hub, store, socket } = setup();
    store.updatesSince.mockResolvedValue({ epoch: EPOCH, frames: [] });
    const s = await socket();
    await hub.catchUp(s.c.ws!, 5, EPOCH);
    expect(s.c.pending).toBeNull();
    const log = deferred<UpdatesSince | null>();
    store.updatesSince.mockReturnValueOnce(log.promise);
    store.get.mockResolvedValue(snapshot(6));
    hub.resync(s.c.ws!, 'gap');
    expect(s.c.pending).not.toBeNull();
    hub.resync(s.c.ws!, 'snapshot request', true);
    log.resolve({ epoch: EPOCH, frames: [frame(6)] });
    await eventually(() => s.types().includes(T.SNAPSHOT_RESPONSE), 2000);
    expect(s.versions()).toEqual([6, 6]);
    expect(s.types()).toEqual([T.STATE_UPDATE, T.SNAPSHOT_RESPONSE]);
    expect(s.c.pending).toBeNull();
  });

  it('sends everything of a catch-up (its first frame, the replay, the deltas held meanwhile) in one cork', async () => {
    const { hub, store, socket, publish } = setup();
    const log = deferred<UpdatesSince | null>();
    store.updatesSince.mockReturnValueOnce(log.promise);
    const s = await socket();
    const done = hub.catchUp(s.c.ws!, 2, EPOCH, () => s.send(JSON.stringify({ type: T.AUTH_SUCCESS, timestamp: 0, payload: {} })));
    publish(frame(5));
    publish(frame(6));
    log.resolve({ epoch: EPOCH, frames: [frame(3), frame(4), frame(5)] });
    await done;
    expect(s.types()).toEqual([T.AUTH_SUCCESS, T.STATE_UPDATE, T.STATE_UPDATE, T.STATE_UPDATE, T.STATE_UPDATE]);
    expect(s.versions()).toEqual([3, 4, 5, 6]);
    expect(new Set(s.sent.map((x) => x.cork))).toEqual(new Set([1]));
  });

  it('a resync that fails for good closes the socket through the counted close path (1011)', async () => {
    const { hub, store, metrics, socket } = setup();
    store.updatesSince.mockResolvedValue({ epoch: EPOCH, frames: [] });
    const s = await socket();
    await hub.catchUp(s.c.ws!, 5, EPOCH);
    store.updatesSince.mockRejectedValue(new Error('script error'));
    hub.resync(s.c.ws!, 'gap');
    await eventually(() => s.ended !== null, 2000);
    expect(s.ended).toBe(1011);
    expect((await metrics.wsCloses.get()).values).toEqual([expect.objectContaining({ labels: { code: '1011' }, value: 1 })]);
  });

  it('a store that is briefly away is retried, deltas held, and the socket stays open', async () => {
    const { hub, store, socket } = setup();
    store.updatesSince.mockResolvedValue({ epoch: EPOCH, frames: [] });
    const s = await socket();
    await hub.catchUp(s.c.ws!, 5, EPOCH);
    store.updatesSince.mockRejectedValueOnce(new StoreUnavailableError(new Error('down')));
    store.updatesSince.mockResolvedValueOnce({ epoch: EPOCH, frames: [frame(6)] });
    hub.resync(s.c.ws!, 'gap');
    await eventually(() => s.versions().includes(6), 2000);
    expect(s.ended).toBeNull();
    expect(s.c.pending).toBeNull();
  });
});
