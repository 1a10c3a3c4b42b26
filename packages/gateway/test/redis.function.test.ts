import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, eventually, startNode, useRedis, type StartedNode } from '@harmonyflow/testkit';
import { createLogger } from '../src/log';
import { KeySpace } from '../src/store/keys';
import { RedisStore } from '../src/store/redis';
import { createRedis, whenReady } from '../src/store/redisClient';

/**
 * The write path and the AUTH claim run as Redis Functions of one library (store/redisLibrary.ts),
 * one per code version, loaded at start and again when Redis lost it.
 */
const redis = useRedis();

/** A node on the given private Redis, and a plain client of that Redis, for one describe block. */
function nodeOn(target: () => { url: string }): { node: () => StartedNode; redis: () => Redis } {
  let n: StartedNode;
  let r: Redis;
  beforeAll(async () => {
    n = await startNode({ REDIS_URL: target().url });
    r = new Redis(target().url);
  });
  afterAll(async () => {
    r.disconnect();
    await n.stop();
  });
  return { node: () => n, redis: () => r };
}

describe('write path as a Redis Function', () => {
  const on = nodeOn(redis);
  let n: StartedNode;
  let r: Redis;
  beforeEach(() => {
    n = on.node();
    r = on.redis();
  });

  const hfLibraries = async () => ((await r.call('FUNCTION', 'LIST')) as unknown[][]).filter((lib) => String(lib[1]).startsWith('hf_'));
  const libraries = async () => (await hfLibraries()).map((lib) => String(lib[1]));

  it('loads one library at start; a Redis that lost it fails the writes that find it missing, loads it again, and goes on in order', async () => {
    const token = await n.token('alice');
    const sid = randomUUID();
    const write = (i: number) => api(n.url, 'POST', '/session/incremental', { token, body: { session_id: sid, changes: { i } } });
    // One library: the write path's function and the AUTH claim's (lua/join.lua).
    const [lib] = await hfLibraries();
    expect(await libraries()).toHaveLength(1);
    const functions = (lib[5] as unknown[][]).map((f) => String(f[1]).replace(/_[0-9a-f]{16}$/, '')).sort();
    expect(functions).toEqual(['hf_join', 'hf_mutate_batch']);
    await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: sid, state_data: { i: 0 } } });
    // What a Redis restarted without persistence looks like to the library: gone.
    await r.call('FUNCTION', 'FLUSH');
    expect(await libraries()).toHaveLength(0);
    // The write that finds it missing is refused as "store unavailable" (nothing applied, never
    // retried behind the client's back, where later writes could overtake it)...
    const refused = await write(1);
    expect(refused.status).toBe(503);
    // ...and the library is back for the next one.
    await eventually(async () => (await libraries()).length === 1);
    const res = await write(2);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ version: 2 });
    const snap = await api(n.url, 'GET', `/session/${sid}`, { token });
    expect(snap.body).toMatchObject({ version: 2, state_data: { i: 2 } });
  });

  it('an AUTH that finds the claim\'s library lost waits for it to be loaded again and joins (a claim can simply be sent again)', async () => {
    const token = await n.token('carol');
    const sid = randomUUID();
    await r.call('FUNCTION', 'FLUSH');
    const d = await connectDevice(n.wsUrl);
    const ok = await d.auth({ token, device_id: 'phone', session_id: sid });
    expect(ok.payload).toMatchObject({ session_id: sid, version: 0, devices: [expect.objectContaining({ device_id: 'phone', status: 'online' })] });
    // The write path is in the same library: the claim's reload brought it back too.
    expect(await libraries()).toHaveLength(1);
    d.send({ type: T.STATE_UPDATE, correlation_id: 'w', payload: { key: 'n', value: 1, operation: 'SET' } });
    expect((await d.next(T.STATE_UPDATE_ACK)).payload).toMatchObject({ version: 1 });
  });

  it('writes sent back to back while the library is lost and loaded again are applied in the order sent, or refused', async () => {
    const token = await n.token('bob');
    const sid = randomUUID();
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token, device_id: 'phone', session_id: sid });
    d.send({ type: T.STATE_UPDATE, correlation_id: 'w0', payload: { key: 'n', value: 0, operation: 'SET' } });
    await d.waitFor(() => d.ofType(T.STATE_UPDATE_ACK).length === 1);
    await r.call('FUNCTION', 'FLUSH');
    const N = 60;
    for (let i = 1; i <= N; i++) d.send({ type: T.STATE_UPDATE, correlation_id: `w${i}`, payload: { key: 'n', value: i, operation: 'SET' } });
    const answered = () => d.frames.filter((f) => (f.type === T.STATE_UPDATE_ACK || f.type === T.ERROR) && f.correlation_id !== 'w0').length;
    await d.waitFor(() => answered() === N, 10_000);
    const refused = d.ofType(T.ERROR);
    expect(refused.length).toBeGreaterThan(0);
    for (const e of refused) expect(e.payload).toMatchObject({ code: 'store_unavailable' });
    // Every write that was applied was applied after the ones sent before it.
    const acks = d.ofType(T.STATE_UPDATE_ACK).slice(1).map((a) => ({ i: Number(String(a.correlation_id).slice(1)), v: a.payload.version as number }));
    expect(acks.length + refused.length).toBe(N);
    for (let k = 1; k < acks.length; k++) {
      expect(acks[k].i).toBeGreaterThan(acks[k - 1].i);
      expect(acks[k].v).toBe(acks[k - 1].v + 1);
    }
    const last = acks.length > 0 ? acks[acks.length - 1] : { i: 0, v: 1 };
    const snap = await api(n.url, 'GET', `/session/${sid}`, { token });
    expect(snap.body).toMatchObject({ version: last.v, state_data: { n: last.i } });
    // And the library is back: the next write goes through.
    d.send({ type: T.STATE_UPDATE, correlation_id: 'after', payload: { key: 'n', value: -1, operation: 'SET' } });
    const after = await d.waitFor((f) => f.type === T.STATE_UPDATE_ACK && f.correlation_id === 'after');
    expect(after.payload).toMatchObject({ version: last.v + 1 });
    await closeAllDevices();
  });
});

describe('store commands while the write path is being loaded', () => {
  it('a read issued after a write waits behind it, and sees it', async () => {
    const client = createRedis({ mode: 'single', url: redis().url }, createLogger('silent', 't'), 'command', 't');
    await whenReady(client, 5000);
    const store = new RedisStore(client, new KeySpace('order:'), { ttlSeconds: 3600, maxStateBytes: 1 << 20, logLength: 100, logMaxBytes: 1 << 20, maxSessionsPerUser: 0, maxHandoffsPerSession: 5 });
    const admin = new Redis(redis().url);
    try {
      const sid = randomUUID();
      const req = (value: number) => ({ sessionId: sid, actor: { userId: 'u', admin: false }, ownerId: 'u', originNode: 't/1', op: { op: 'set' as const, key: 'a', value } });
      await eventually(async () => (await store.mutate(req(1))).status === 'ok');
      for (let round = 0; round < 5; round++) {
        await admin.call('FUNCTION', 'FLUSH');
        // Refused, and the reload starts; the write and the read below are made while it runs.
        await expect(store.mutate(req(100 + round))).rejects.toThrow(/unavailable/i);
        const write = store.mutate(req(round + 2));
        const read = store.get(sid);
        const [w, r] = await Promise.all([write, read]);
        expect(w).toMatchObject({ status: 'ok' });
        expect(r).toMatchObject({ version: (w as { version: number }).version, state: { a: round + 2 } });
      }
    } finally {
      admin.disconnect();
      client.disconnect();
      await store.close();
    }
  });
});

describe('write path on a Redis that refuses Functions', () => {
  // As on a managed Redis or behind an ACL that does not allow FUNCTION.
  const on = nodeOn(useRedis(['--rename-command', 'FUNCTION', '']));
  let n: StartedNode;
  let r: Redis;
  beforeEach(() => {
    n = on.node();
    r = on.redis();
  });

  it('runs it as a script, with the same rules when Redis loses it', async () => {
    await expect(r.call('FUNCTION', 'LIST')).rejects.toThrow(/unknown command/i);
    const token = await n.token('carol');
    const sid = randomUUID();
    const write = (i: number) => api(n.url, 'POST', '/session/incremental', { token, body: { session_id: sid, changes: { i } } });
    expect((await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: sid, state_data: { i: 0 } } })).status).toBe(201);
    expect((await write(1)).body).toMatchObject({ version: 2 });
    await r.call('SCRIPT', 'FLUSH');
    expect((await write(2)).status).toBe(503);
    await eventually(async () => (await write(3)).status === 200);
    const snap = await api(n.url, 'GET', `/session/${sid}`, { token });
    expect(snap.body).toMatchObject({ version: 3, state_data: { i: 3 } });
    // The AUTH claim (lua/join.lua) too: after the flush it finds its script missing, and joins once
    // the scripts are loaded again.
    await r.call('SCRIPT', 'FLUSH');
    const d = await connectDevice(n.wsUrl);
    const ok = await d.auth({ token, device_id: 'tablet', session_id: sid });
    expect(ok.payload).toMatchObject({ session_id: sid, version: 3, devices: [expect.objectContaining({ device_id: 'tablet', status: 'online' })] });
    await closeAllDevices();
  });
});
