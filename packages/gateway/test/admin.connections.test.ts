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
