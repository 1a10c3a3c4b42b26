import { randomUUID } from 'node:crypto';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, useNode, useRedis } from '@harmonyflow/testkit';

const redis = useRedis();
afterEach(closeAllDevices);

describe.each([
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url, REDIS_PREFIX: `v${randomUUID().slice(0, 6)}:` })],
])('missed bus frames are healed by the version check (%s)', (_name, env) => {
  const n = useNode(() => ({ CONSISTENCY_CHECK_MS: '200', ...env() }));

  it('a socket whose node silently lost the session channel still gets the last change', async () => {
    const token = await n().token('alice');
    const sid = randomUUID();
    const d = await connectDevice(n().wsUrl);
    await d.auth({ token, device_id: 'phone', session_id: sid });
    await d.next(T.SNAPSHOT_RESPONSE);
    // Simulate the failure mode: the node stays "up" but its bus no longer delivers this session.
    await n().node.bus.unsubscribe([sid]);
    const from = d.frames.length;
    expect((await api(n().url, 'POST', '/session/snapshot', { token, body: { session_id: sid, state_data: { mood: 'calm' } } })).status).toBe(201);
    const healed = await d.next(T.SNAPSHOT_RESPONSE, 6000, from);
    expect(healed.payload).toMatchObject({ version: 1, state_data: { mood: 'calm' } });
  });
});
