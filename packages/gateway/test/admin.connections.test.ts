import { randomUUID } from 'node:crypto';
import { api, closeAllDevices, connectDevice, eventually, useNode, useRedis } from '@harmonyflow/testkit';

const redis = useRedis();
afterAll(closeAllDevices);

describe.each([
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url, REDIS_PREFIX: `a${randomUUID().slice(0, 6)}:` })],
])('GET /admin/connections tracks connections as they come and go (%s)', (_name, env) => {
  const n = useNode(() => ({ PRESENCE_TIMEOUT_MS: '2000', ...env() }));

  it('lists a new connection and drops a closed one', async () => {
    const admin = await n().token('root', 'admin');
    const list = async () => (await api(n().url, 'GET', '/admin/connections?limit=500', { token: admin })).body.items as Array<{ device_id: string; session_id: string }>;
    const sid = randomUUID();
    const a = await connectDevice(n().wsUrl);
    await a.auth({ token: await n().token('alice'), device_id: 'phone', session_id: sid });
    const b = await connectDevice(n().wsUrl);
    await b.auth({ token: await n().token('alice'), device_id: 'tablet', session_id: sid });
    await eventually(async () => (await list()).filter((c) => c.session_id === sid).length === 2, 5000, 100);
    await a.close();
    await eventually(async () => {
      const mine = (await list()).filter((c) => c.session_id === sid);
      return mine.length === 1 && mine[0].device_id === 'tablet';
    }, 5000, 100);
  });

  it('lists this node with its real start time even while its registry entry is missing', async () => {
    const admin = await n().token('root', 'admin');
    const self = async () => ((await api(n().url, 'GET', '/admin/metrics/connections', { token: admin })).body.nodes as Array<{ instance: string; started_at: string }>)
      .find((x) => x.instance === n().node.instance);
    const startedAt = (await eventually(self, 5000, 50))!.started_at;
    await n().node.registry.forget(n().node.instance); // as before its first beat lands, or after a reaper forgot it
    expect((await self())?.started_at).toBe(startedAt);
  });
});

describe('GET /admin/connections lists other nodes\' connections from their heartbeats (Redis)', () => {
  const env = () => ({ PRESENCE_TIMEOUT_MS: '2000', REDIS_URL: redis().url, REDIS_PREFIX: 'xnode:' });
  const a = useNode(env);
  const b = useNode(env);

  it('a connection on node A appears on node B after a heartbeat, and goes when it closes; many come and go', async () => {
    const admin = await b().token('root', 'admin');
    const onB = async (sid: string) => ((await api(b().url, 'GET', '/admin/connections?limit=500', { token: admin })).body.items as Array<{ device_id: string; session_id: string; node_id: string }>)
      .filter((c) => c.session_id === sid);
    const sid = randomUUID();
    const token = await a().token('alice');
    const devices = [];
    for (let i = 0; i < 20; i++) {
      const d = await connectDevice(a().wsUrl);
      await d.auth({ token, device_id: `d${i}`, session_id: sid });
      devices.push(d);
    }
    await eventually(async () => (await onB(sid)).length === 20, 5000, 100);
    expect((await onB(sid))[0].node_id).toBe(a().node.config.nodeId);
    for (const d of devices.slice(0, 15)) await d.close();
    await eventually(async () => {
      const left = (await onB(sid)).map((c) => c.device_id).sort();
      return JSON.stringify(left) === JSON.stringify(['d15', 'd16', 'd17', 'd18', 'd19']);
    }, 5000, 100);
  });
});

describe('GET /admin/connections pages across nodes (Redis)', () => {
  const prefix = `p${randomUUID().slice(0, 6)}:`;
  const env = () => ({ PRESENCE_TIMEOUT_MS: '2000', REDIS_URL: redis().url, REDIS_PREFIX: prefix });
  const a = useNode(env);
  const b = useNode(env);

  /** Every item of a walk with `limit`, following next_cursor to the end. */
  async function walk(url: string, token: string, limit: number): Promise<Array<{ conn_id: string; session_id: string }>> {
    const seen: Array<{ conn_id: string; session_id: string }> = [];
    let cursor: string | null = null;
    for (let pages = 0; ; pages++) {
      expect(pages).toBeLessThan(1000);
      const q: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
      const r = await api(url, 'GET', `/admin/connections?limit=${limit}${q}`, { token });
      expect(r.status).toBe(200);
      expect(r.body.items.length).toBeLessThanOrEqual(limit);
      seen.push(...r.body.items);
      cursor = r.body.next_cursor;
      if (!cursor) return seen;
    }
  }

  it('a walk with limit=3 from either node lists every connection of both exactly once', async () => {
    const sid = randomUUID();
    const expected: string[] = [];
    for (const [node, name, count] of [[a, 'a', 7], [b, 'b', 5]] as const) {
      const token = await node().token('alice');
      for (let i = 0; i < count; i++) {
        const d = await connectDevice(node().wsUrl);
        await d.auth({ token, device_id: `${name}${i}`, session_id: sid });
        expected.push(`${name}${i}`);
      }
    }
    for (const node of [a, b]) {
      const admin = await node().token('root', 'admin');
      await eventually(async () => {
        const seen = await walk(node().url, admin, 3);
        const ids = seen.map((c) => c.conn_id);
        expect(new Set(ids).size).toBe(ids.length);
        const mine = seen.filter((c) => c.session_id === sid) as unknown as Array<{ device_id: string }>;
        expect(mine.map((c) => c.device_id).sort()).toEqual([...expected].sort());
        return true;
      }, 5000, 100);
    }
  });
});
