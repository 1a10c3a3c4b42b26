import { api, useNode } from '@harmonyflow/testkit';

describe('GET /metrics behind METRICS_TOKEN', () => {
  const n = useNode({ METRICS_TOKEN: 'scrape-secret' });

  it('needs the token when one is configured', async () => {
    expect((await api(n().url, 'GET', '/metrics')).status).toBe(401);
    expect((await api(n().url, 'GET', '/metrics', { token: 'wrong' })).status).toBe(401);
    const ok = await api(n().url, 'GET', '/metrics', { token: 'scrape-secret' });
    expect(ok.status).toBe(200);
    expect(ok.body).toContain('hf_ws_connections');
    // Health and readiness stay open for probes.
    expect((await api(n().url, 'GET', '/health')).status).toBe(200);
  });
});
