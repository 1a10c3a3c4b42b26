import { randomUUID } from 'node:crypto';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, eventually, sleep, startNode, startRedis, type PrivateRedis, type StartedNode, type TestDevice } from '@harmonyflow/testkit';

/**
 * SPEC §9 "Expiry": the TTL slides on writes and while devices are connected; a session with no
 * device and no write for SNAPSHOT_TTL_SECONDS expires whole, and is created again in a new epoch.
 */
describe('session expiry with SNAPSHOT_TTL_SECONDS=4', () => {
  let redis: PrivateRedis;
  const nodes: StartedNode[] = [];
  beforeAll(async () => {
    redis = await startRedis();
    const env = { SNAPSHOT_TTL_SECONDS: '4', WS_RATE_PER_SECOND: '1000' };
    nodes.push(await startNode(env), await startNode({ ...env, REDIS_URL: redis.url }));
  });
  afterAll(async () => {
    await closeAllDevices();
    for (const n of nodes) await n.stop();
    await redis.stop();
  });

  async function device(n: StartedNode, id: string, sid: string): Promise<TestDevice> {
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token: await n.token('alice'), device_id: id, session_id: sid });
    await d.next(T.SNAPSHOT_RESPONSE);
    return d;
  }

  async function write(d: TestDevice, key: string, value: unknown): Promise<number> {
    const corr = randomUUID();
    d.send({ type: T.STATE_UPDATE, correlation_id: corr, payload: { key, value, operation: 'SET' } });
    const ack = await d.waitFor((e) => e.type === T.STATE_UPDATE_ACK && e.correlation_id === corr);
    return ack.payload.version as number;
  }

  it('two heartbeating devices keep an idle session alive for 15 s; writes continue its versions (embedded and Redis)', async () => {
    await Promise.all(nodes.map(async (n) => {
      const sid = randomUUID();
      const a = await device(n, 'a', sid);
      const b = await device(n, 'b', sid);
      for (let i = 1; i <= 3; i++) expect(await write(a, `k${i}`, i)).toBe(i);
      const epoch = (await api(n.url, 'GET', `/session/${sid}`, { token: await n.token('alice') })).body.epoch;
      const until = Date.now() + 15_000;
      while (Date.now() < until) {
        for (const d of [a, b]) d.send({ type: T.HEARTBEAT, payload: { client_time: Date.now() } });
        await sleep(1000);
      }
      const snap = await api(n.url, 'GET', `/session/${sid}`, { token: await n.token('alice') });
      expect(snap.status).toBe(200);
      expect(snap.body).toMatchObject({ version: 3, epoch, state_data: { k1: 1, k2: 2, k3: 3 } });
      expect(await write(b, 'k4', 4)).toBe(4);
      const update = await a.waitFor((e) => e.type === T.STATE_UPDATE && e.payload.key === 'k4');
      expect(update.payload.version).toBe(4);
      expect(a.ofType(T.SNAPSHOT_RESPONSE)).toHaveLength(1);
    }));
  }, 40_000);

  it('an idle session without devices expires whole (404) and, created again, has a new epoch (embedded and Redis)', async () => {
    await Promise.all(nodes.map(async (n) => {
      const token = await n.token('alice');
      const sid = randomUUID();
      const first = await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: sid, state_data: { a: 1 } } });
      expect(first.status).toBe(201);
      await api(n.url, 'POST', '/session/incremental', { token, body: { session_id: sid, changes: { b: 2 } } });
      const d = await device(n, 'passing', sid);
      await d.close();
      const lastActivity = Date.now();
      // Alive for at least one TTL after the last activity (reads are not activity)...
      await sleep(lastActivity + 3400 - Date.now());
      expect((await api(n.url, 'GET', `/session/${sid}`, { token })).status).toBe(200);
      // ...and gone by 9/8 of it (plus the expiry sweep's delay).
      await eventually(async () => (await api(n.url, 'GET', `/session/${sid}`, { token })).status === 404, 8000, 200);
      expect((await api(n.url, 'GET', `/session/${sid}/devices`, { token })).status).toBe(404);
      const again = await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: sid, state_data: { c: 3 } } });
      expect(again.status).toBe(201);
      expect(again.body).toMatchObject({ version: 1, state_data: { c: 3 } });
      expect(again.body.epoch).not.toBe(first.body.epoch);
    }));
  }, 30_000);
});
