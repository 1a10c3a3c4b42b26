import { MemoryStorage, SessionError } from '../src';
import { accept, ack, authSuccess, closeClients, countingWebSocket, expectWrites, fakeServer, pendingIn, sdkClient, T, until } from './helpers';

// Protocol details against a scripted server: what a real gateway cannot be made to do on cue.
const SID = '00000000-0000-4000-8000-000000000001';
let server: Awaited<ReturnType<typeof fakeServer>> | null = null;

afterEach(async () => {
  closeClients();
  await server?.close();
  server = null;
});

/** A JWT-shaped token (the fake server verifies nothing; the client reads `exp` and `iat`). */
function fakeJwt(ttlSeconds: number, tag: string): string {
  const now = Math.floor(Date.now() / 1000);
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256' })}.${b64({ sub: 'alice', iat: now, exp: now + ttlSeconds, tag })}.sig`;
}

describe('SessionClient protocol (scripted server)', () => {
  it('resumes with last_version and last_epoch; a new epoch replaces the state even at a lower version, and its updates apply', async () => {
    server = await fakeServer(() => undefined);
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID });
    const connected = c.connect();
    const first = await server.conn(0);
    const auth0 = await first.next(T.AUTH);
    expect(auth0.payload).toMatchObject({ token: 't', device_id: 'd', session_id: SID });
    expect(auth0.payload.last_version).toBeUndefined();
    first.send(T.AUTH_SUCCESS, authSuccess({ version: 5, epoch: 'e1' }));
    first.send(T.SNAPSHOT_RESPONSE, { session_id: SID, version: 5, state_data: { a: 1, b: 2 }, updated_at: '', epoch: 'e1' });
    await connected;
    first.send(T.STATE_UPDATE, { key: 'a', value: 3, operation: 'SET', version: 6, device_id: 'other' });
    await until(() => c.version === 6);
    first.socket.terminate();

    const second = await server.conn(1);
    const auth1 = await second.next(T.AUTH);
    expect(auth1.payload).toMatchObject({ last_version: 6, last_epoch: 'e1' });
    second.send(T.AUTH_SUCCESS, authSuccess({ version: 2, epoch: 'e2', resumed: false }));
    second.send(T.SNAPSHOT_RESPONSE, { session_id: SID, version: 2, state_data: { fresh: true }, updated_at: '', epoch: 'e2' });
    second.send(T.STATE_UPDATE, { key: 'n', value: 1, operation: 'SET', version: 3, device_id: 'other' });
    await until(() => c.version === 3);
    expect({ ...c.state }).toEqual({ fresh: true, n: 1 });
    expect(c.epoch).toBe('e2');
  });

  it('sends one write at a time in mutation_id order; after a lost ACK, last_mutation_id settles the processed write as a duplicate', async () => {
    server = await fakeServer(() => undefined);
    const storage = new MemoryStorage();
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, storage });
    const connected = c.connect();
    const first = await server.conn(0);
    await accept(first);
    await connected;
    const writes = [c.increment('n'), c.increment('n'), c.increment('n')];
    const w1 = await first.next(T.STATE_UPDATE);
    expect(w1.payload).toMatchObject({ key: 'n', operation: 'INCREMENT', value: 1, mutation_id: 1 });
    await new Promise((r) => setTimeout(r, 150));
    expect(first.frames.filter((f) => f.type === T.STATE_UPDATE)).toHaveLength(1); // nothing overtakes it
    ack(first, w1, 1, { value: 1 });
    const w2 = await first.next(T.STATE_UPDATE);
    expect(w2.payload.mutation_id).toBe(2);
    // The server applies #2 (version 2) but the ACK is lost with the connection.
    first.socket.terminate();

    const second = await server.conn(1);
    const auth = await second.next(T.AUTH);
    // Resumes from before #2 so that its effect is replayed to this device.
    expect(auth.payload.last_version).toBe(1);
    second.send(T.AUTH_SUCCESS, authSuccess({ version: 2, resumed: true, last_mutation_id: 2 }));
    second.send(T.STATE_UPDATE, { key: 'n', value: 2, operation: 'INCREMENT', delta: 1, version: 2, device_id: 'd' });
    const w3 = await second.next(T.STATE_UPDATE);
    expect(w3.payload.mutation_id).toBe(3);
    ack(second, w3, 3, { value: 3 });
    const results = await Promise.all(writes);
    expect(results).toEqual([{ version: 1, value: 1 }, { version: 2, duplicate: true }, { version: 3, value: 3 }]);
    expect(c.state.n).toBe(3);
    expect(c.version).toBe(3);
    expect(pendingIn(storage.getItem(`harmonyflow:outbox:d:${SID}`))).toEqual([]);
    expect(second.frames.filter((f) => f.type === T.STATE_UPDATE)).toHaveLength(1);
  });

  it('a write sent to a server that states no last_mutation_id is settled, not renumbered, when the next server says it was processed', async () => {
    server = await fakeServer(() => undefined);
    const storage = new MemoryStorage();
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, storage });
    const connected = c.connect();
    const first = await server.conn(0);
    await accept(first, { last_mutation_id: undefined }); // e.g. an older node during a rolling upgrade
    await connected;
    const write = c.increment('n');
    write.catch(() => undefined); // awaited below; a failure before that must not crash the run
    const w1 = await first.next(T.STATE_UPDATE);
    expect(w1.payload.mutation_id).toBe(1);
    // Saved before it was sent, so an app restart knows it too.
    expect(JSON.parse(storage.getItem(`harmonyflow:outbox:d:${SID}`)!)).toMatchObject({ synced: true });
    // The server applies #1; its ACK is lost with the connection.
    first.socket.terminate();

    const second = await server.conn(1);
    await accept(second, { last_mutation_id: 1, version: 1 }, { n: 1 });
    await expect(write).resolves.toEqual({ version: 1, duplicate: true });
    await new Promise((r) => setTimeout(r, 100));
    expect(second.frames.filter((f) => f.type === T.STATE_UPDATE)).toEqual([]);
  });

  it('re-sends an unacknowledged write with the same ids after ackTimeoutMs; a duplicate ACK resolves it', async () => {
    server = await fakeServer(() => undefined);
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, ackTimeoutMs: 200 });
    const connected = c.connect();
    const conn = await server.conn(0);
    await accept(conn, { version: 4 });
    await connected;
    const write = c.set('k', 'v');
    const a = await conn.next(T.STATE_UPDATE);
    const b = await conn.next(T.STATE_UPDATE);
    expect(b.correlation_id).toBe(a.correlation_id);
    expect(b.payload.mutation_id).toBe(a.payload.mutation_id);
    ack(conn, b, 9, { duplicate: true });
    await expect(write).resolves.toEqual({ version: 9, duplicate: true });
    expect(c.state.k).toBeUndefined(); // a duplicate says nothing about the value: replay or snapshot will
  });

  it('close 1009 rejects the write in flight with payload_too_large, reconnects, and the next write goes through; a stated max_message_bytes is enforced locally', async () => {
    server = await fakeServer(() => undefined);
    const ws = countingWebSocket();
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, WebSocket: ws.WS });
    const connected = c.connect();
    const first = await server.conn(0);
    await accept(first, { max_message_bytes: undefined }); // an older server states no limit
    await connected;
    const big = c.set('blob', 'x'.repeat(10_000));
    await first.next(T.STATE_UPDATE);
    first.send(T.ERROR, { code: 'payload_too_large', message: 'frame too big' });
    first.socket.close(1009, 'message too big');
    await expect(big).rejects.toMatchObject({ code: 'payload_too_large' });

    const second = await server.conn(1);
    await accept(second, { max_message_bytes: 1024 });
    await until(() => c.status === 'connected');
    const small = c.set('s', 1);
    const w = await second.next(T.STATE_UPDATE);
    expect(w.payload).toMatchObject({ key: 's', value: 1 });
    ack(second, w, 1);
    await expect(small).resolves.toEqual({ version: 1 });
    const sentBefore = ws.sent.length;
    const err = await c.set('blob', 'y'.repeat(2000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SessionError);
    expect(err).toMatchObject({ code: 'payload_too_large', details: { limit: 1024 } });
    expect(ws.sent.length).toBe(sentBefore);
    expect(ws.opened()).toBe(2);
    expect(c.status).toBe('connected');
  });

  it('refreshes a token nearing expiry with AUTH on the live connection, and at once on ERROR token_expired', async () => {
    server = await fakeServer(() => undefined);
    const ws = countingWebSocket();
    let calls = 0;
    const c = sdkClient({ url: server.url, token: () => fakeJwt(3, `t${++calls}`), deviceId: 'd', sessionId: SID, WebSocket: ws.WS });
    const connected = c.connect();
    const conn = await server.conn(0);
    await accept(conn);
    await connected;
    // Lifetime 3 s: refreshed at half-life, not 60 s early (which would be at once, in a loop).
    const reauth = await conn.next(T.AUTH, 3000);
    expect(reauth.correlation_id).toMatch(/^reauth-/);
    expect(reauth.payload).toMatchObject({ device_id: 'd', session_id: SID });
    expect(reauth.payload.token).not.toBe(conn.frames[0].payload.token);
    conn.send(T.AUTH_SUCCESS, authSuccess(), reauth.correlation_id);
    const before = calls;
    conn.send(T.ERROR, { code: 'token_expired', message: 'token expired' });
    const again = await conn.next(T.AUTH, 1000);
    expect(again.correlation_id).toMatch(/^reauth-/);
    expect(calls).toBe(before + 1);
    expect(ws.opened()).toBe(1);
    expect(c.status).toBe('connected');
  });

  it('close() then connect() while token() is still running opens one socket, not two', async () => {
    server = await fakeServer(() => undefined);
    const ws = countingWebSocket();
    const slowToken = () => new Promise<string>((r) => setTimeout(() => r('t'), 200));
    const c = sdkClient({ url: server.url, token: slowToken, deviceId: 'd', sessionId: SID, WebSocket: ws.WS });
    const first = c.connect();
    await c.close();
    await expect(first).rejects.toMatchObject({ code: 'closed' });
    const second = c.connect();
    await accept(await server.conn(0));
    await second;
    await new Promise((r) => setTimeout(r, 400));
    expect(ws.opened()).toBe(1);
    expect(c.status).toBe('connected');
  });

  it('renumbers writes never sent when the server already knows their ids (storage wiped, server kept its mark)', async () => {
    server = await fakeServer(() => undefined);
    const storage = new MemoryStorage();
    const key = `harmonyflow:outbox:d:${SID}`;
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, storage });
    const offline = [c.increment('n'), c.set('mood', 'calm')];
    for (const p of offline) p.catch(() => undefined); // awaited below; a failure before that must not crash the run
    await until(() => pendingIn(storage.getItem(key)).length === 2);
    expect(JSON.parse(storage.getItem(key)!)).toMatchObject({ next: 2, synced: false });
    expect(pendingIn(storage.getItem(key)).map((w) => w.m)).toEqual([1, 2]);
    const connected = c.connect();
    const conn = await server.conn(0);
    await accept(conn, { last_mutation_id: 5 });
    await connected;
    await expectWrites(conn, [['n', 6, 1, { value: 1 }], ['mood', 7, 2]]);
    expect(await Promise.all(offline)).toEqual([{ version: 1, value: 1 }, { version: 2 }]);
    await until(() => pendingIn(storage.getItem(key)).length === 0);
    expect(JSON.parse(storage.getItem(key)!)).toMatchObject({ next: 7, synced: true });
  });

  it('binds session-less writes to the session AUTH names, numbered above last_mutation_id; ids keep rising for the next client', async () => {
    server = await fakeServer(() => undefined);
    const storage = new MemoryStorage();
    // No sessionId: the server picks (the user's most recent session).
    const c = sdkClient({ url: server.url, token: 't', deviceId: 'd', storage });
    const offline = [c.increment('n'), c.set('mood', 'calm')];
    await until(() => pendingIn(storage.getItem('harmonyflow:outbox:d:~')).length === 2);
    expect(pendingIn(storage.getItem('harmonyflow:outbox:d:~')).map((w) => w.m)).toEqual([0, 0]);
    const connected = c.connect();
    const conn = await server.conn(0);
    await accept(conn, { last_mutation_id: 7 });
    await connected;
    await expectWrites(conn, [['n', 8, 1, { value: 1 }], ['mood', 9, 2]]);
    await Promise.all(offline);
    expect(storage.getItem('harmonyflow:outbox:d:~')).toBeNull();
    await until(() => pendingIn(storage.getItem(`harmonyflow:outbox:d:${SID}`)).length === 0);
    expect(JSON.parse(storage.getItem(`harmonyflow:outbox:d:${SID}`)!)).toMatchObject({ next: 9, synced: true });
    // A new client, same storage and device, wiped server-side knowledge aside: ids keep rising.
    const again = sdkClient({ url: server.url, token: 't', deviceId: 'd', sessionId: SID, storage });
    const connected2 = again.connect();
    const second = await server.conn(1);
    await accept(second, { last_mutation_id: 9 });
    await connected2;
    const w = again.increment('n');
    const f = await second.next(T.STATE_UPDATE);
    expect(f.payload.mutation_id).toBe(10);
    ack(second, f, 3, { value: 2 });
    await w;
  });
});

