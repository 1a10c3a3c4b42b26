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
