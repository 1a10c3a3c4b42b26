import { api, eventually, useNode } from '@harmonyflow/testkit';

describe('/ready and the bus canary', () => {
  // A short presence timeout makes the canary run every 200 ms.
  const n = useNode({ PRESENCE_TIMEOUT_MS: '1000' });

  it('turns 503 bus_silent when the node stops hearing its own canary, and 200 once it does again', async () => {
    expect((await api(n().url, 'GET', '/ready')).status).toBe(200);
    const canary = `canary-${n().node.instance}`;
    // The failure mode of every peer: connected and "healthy", but subscribed to nothing.
    await n().node.bus.unsubscribe([canary]);
    const silent = await eventually(async () => {
      const r = await api(n().url, 'GET', '/ready');
      return r.status === 503 ? r : null;
    }, 5000, 50);
    expect(silent.body).toMatchObject({ ready: false, reason: 'bus_silent' });
    await n().node.bus.subscribe([canary]);
    await eventually(async () => (await api(n().url, 'GET', '/ready')).status === 200, 5000, 50);
  });
});
