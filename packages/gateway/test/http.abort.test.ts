import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { api, startNode } from '@harmonyflow/testkit';

describe('aborted uploads', () => {
  it('a client vanishing mid-body neither hangs the request nor delays shutdown', async () => {
    const n = await startNode({ DRAIN_TIMEOUT_MS: '10000' });
    const token = await n.token('alice');
    const port = Number(new URL(n.url).port);
    for (let i = 0; i < 5; i++) {
      const sock = net.connect(port, '127.0.0.1');
      await new Promise((r) => sock.once('connect', r));
      sock.write(`POST /session/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"session_id":"${randomUUID()}","state_data":{"a":"`);
      await new Promise((r) => setTimeout(r, 20));
      sock.destroy();
    }
    await new Promise((r) => setTimeout(r, 100));
    // The node keeps serving.
    expect((await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: randomUUID(), state_data: { ok: true } } })).status).toBe(201);
    const started = Date.now();
    await n.stop();
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
