import { MemoryStorage, SessionError, type StorageLike } from '../src';
import { accept, closeClients, expectWrites, fakeServer, pendingIn, sdkClient, T, until } from './helpers';

// Storage adapters that misbehave, against a scripted server.
const SID = '00000000-0000-4000-8000-000000000001';
const KEY = `harmonyflow:outbox:d:${SID}`;
let server: Awaited<ReturnType<typeof fakeServer>> | null = null;

afterEach(async () => {
  closeClients();
  await server?.close();
  server = null;
});

/** Memory storage whose getItem throws while `failing(key)` says so, setItem while `failingSave`; counts the saves. */
class FlakyStorage implements StorageLike {
  readonly inner = new MemoryStorage();
  reads = 0;
  saves = 0;
  /** setItem throws while this says so (counted in `saves` all the same). */
  failingSave: (key: string) => boolean = () => false;
  constructor(public failing: (key: string, read: number) => boolean) {}
  getItem(key: string): string | null {
    if (this.failing(key, ++this.reads)) throw new Error('disk busy');
    return this.inner.getItem(key);
  }
  setItem(key: string, value: string): void {
    this.saves++;
    if (this.failingSave(key)) throw new Error('disk full');
    this.inner.setItem(key, value);
  }
  removeItem(key: string): void {
    this.inner.removeItem(key);
  }
}

/** A queue an earlier client left: writes 1 and 2, already compared with the server. */
const EARLIER = JSON.stringify({
  v: 1, next: 2, synced: true,
  pending: [{ m: 1, c: 'corr-1', k: 'a', op: 'SET', v: 1 }, { m: 2, c: 'corr-2', k: 'b', op: 'SET', v: 2 }],
});

describe('SessionClient with a storage that fails to read', () => {
  it('a getItem that throws once is read again: the earlier queue is sent first and the new write numbered after it', async () => {
    server = await fakeServer(() => undefined);
    const storage = new FlakyStorage((_key, read) => read === 1);
    storage.inner.setItem(KEY, EARLIER);
    const errors: SessionError[] = [];
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, storage });
    c.on('error', (e) => errors.push(e));
    const mine = c.set('c', 3);
    mine.catch(() => undefined); // awaited below; a failure before that must not crash the run
    await until(() => pendingIn(storage.inner.getItem(KEY)).length === 3);
    expect(pendingIn(storage.inner.getItem(KEY)).map((w) => w.m)).toEqual([1, 2, 3]);
    const connected = c.connect();
    const conn = await server.conn(0);
    await accept(conn, { last_mutation_id: 0 });
    await connected;
    await expectWrites(conn, [['a', 1, 1], ['b', 2, 2], ['c', 3, 3]]);
    await expect(mine).resolves.toEqual({ version: 3 });
    expect(errors).toEqual([]);
  });

  it('while storage stays unreadable, writes are refused with storage_failed and the stored queue is not overwritten', async () => {
    server = await fakeServer(() => undefined);
    const storage = new FlakyStorage(() => true);
    storage.inner.setItem(KEY, EARLIER);
    const errors: SessionError[] = [];
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, storage });
    c.on('error', (e) => errors.push(e));
    const refused = await c.set('c', 3).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SessionError);
    expect(refused).toMatchObject({ code: 'storage_failed' });
    expect(errors.map((e) => e.code)).toContain('storage_failed');
    const connected = c.connect();
    await new Promise((r) => setTimeout(r, 300));
    expect(server.conns).toHaveLength(0); // nothing may be sent before the stored queue is known
    expect(storage.saves).toBe(0);
    expect(storage.inner.getItem(KEY)).toBe(EARLIER);

    storage.failing = () => false; // the disk is back
    const conn = await server.conn(0, 8000);
    await accept(conn, { last_mutation_id: 0 });
    await connected;
    await expectWrites(conn, [['a', 1, 1], ['b', 2, 2]]);
    const later = c.set('c', 3);
    await expectWrites(conn, [['c', 3, 3]]);
    await expect(later).resolves.toEqual({ version: 3 });
  }, 15_000);

  it('a session document unreadable when session-less writes join it: nothing is sent on that connection, the next one reads it and sends its writes first', async () => {
    server = await fakeServer(() => undefined);
    let sessionReads = 0;
    // Every read of the first join fails (the outbox reads 4 times before giving up).
    const storage = new FlakyStorage((key) => key === KEY && ++sessionReads <= 4);
    storage.inner.setItem(KEY, EARLIER);
    // No sessionId: the write waits in the session-less queue until AUTH names the session.
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', storage });
    const offline = c.set('c', 3);
    offline.catch(() => undefined); // awaited below; a failure before that must not crash the run
    await until(() => pendingIn(storage.inner.getItem('harmonyflow:outbox:d:~')).length === 1);
    const connected = c.connect();
    const first = await server.conn(0);
    await accept(first, { last_mutation_id: 0 });
    const second = await server.conn(1, 8000);
    expect(first.frames.filter((f) => f.type === T.STATE_UPDATE)).toEqual([]);
    expect(sessionReads).toBe(4);
    await accept(second, { last_mutation_id: 0 });
    await connected;
    await expectWrites(second, [['a', 1, 1], ['b', 2, 2], ['c', 3, 3]]);
    await expect(offline).resolves.toEqual({ version: 3 });
    await until(() => pendingIn(storage.inner.getItem(KEY)).length === 0);
    expect(JSON.parse(storage.inner.getItem(KEY)!)).toMatchObject({ next: 3, synced: true });
  }, 15_000);

  it('a save that fails while the first AUTH marks the queue as sent from is made again on the next connection before anything is sent', async () => {
    // Stored "never compared with a server": a later client would renumber these writes. Once one
    // is sent, storage must say otherwise, or a write applied here could be applied again.
    server = await fakeServer(() => undefined);
    const storage = new FlakyStorage(() => false);
    storage.inner.setItem(KEY, JSON.stringify({ v: 1, next: 1, synced: false, pending: [{ m: 1, c: 'corr-1', k: 'a', op: 'SET', v: 1 }] }));
    storage.failingSave = () => storage.saves === 1;
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, storage });
    const connected = c.connect();
    const first = await server.conn(0);
    await accept(first, { last_mutation_id: 0 });
    const second = await server.conn(1, 8000);
    expect(first.frames.filter((f) => f.type === T.STATE_UPDATE)).toEqual([]);
    await accept(second, { last_mutation_id: 0 });
    await connected;
    const w = await second.next(T.STATE_UPDATE);
    expect(w.payload).toMatchObject({ key: 'a', mutation_id: 1 });
    expect(JSON.parse(storage.inner.getItem(KEY)!)).toMatchObject({ synced: true });
  }, 15_000);
});
