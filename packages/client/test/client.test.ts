import WebSocket from 'ws';
import { randomUUID } from 'node:crypto';
import { SessionClient, SessionError, type WebSocketFactory } from '../src';
import { protoCodec } from '../src/proto';
import { freePort, startNode, useRedis, type StartedNode } from '@harmonyflow/testkit';

const redis = useRedis();

function client(n: { wsUrl: string }, token: string, deviceId: string, sessionId: string, codec: 'json' | 'proto' = 'json') {
  return new SessionClient({ url: n.wsUrl, token, deviceId, sessionId, codec: codec === 'proto' ? protoCodec : 'json', WebSocket: WebSocket as unknown as WebSocketFactory, reconnect: { minDelayMs: 50, maxDelayMs: 500 } });
}

async function until(check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('SessionClient', () => {
  let n: StartedNode;
  let port: number;
  let prefix: string;
  beforeAll(async () => {
    port = await freePort();
    prefix = `c${randomUUID().slice(0, 6)}:`;
    n = await startNode({ PORT: String(port), REDIS_URL: redis().url, REDIS_PREFIX: prefix, WS_RATE_PER_SECOND: '10000', WS_RATE_BURST: '10000' });
  });
  afterAll(async () => {
    await n.stop();
  });

  it('keeps two devices in sync (JSON and protobuf) and surfaces conflicts as SessionError', async () => {
    const token = await n.token('alice');
    const sid = randomUUID();
    const phone = client(n, token, 'phone', sid);
    const web = client(n, token, 'web', sid, 'proto');
    await Promise.all([phone.connect(), web.connect()]);
    await phone.set('mood', 'calm');
    await web.increment('minutes', 5);
    expect(await phone.increment('minutes', 2)).toMatchObject({ value: 7 });
    await phone.delete('mood');
    await until(() => web.version === 4 && phone.state.minutes === 7);
    expect({ ...web.state }).toEqual({ minutes: 7 });
    expect({ ...phone.state }).toEqual({ minutes: 7 });
    phone.close();
    web.close();
  });

  it('survives a node restart: reconnects, resumes and applies writes made meanwhile exactly once', async () => {
    const token = await n.token('alice');
    const sid = randomUUID();
    const a = client(n, token, 'phone', sid);
    const b = client(n, token, 'tablet', sid);
    await Promise.all([a.connect(), b.connect()]);
    for (let i = 0; i < 10; i++) await a.increment('n');
    await n.stop();
    const during = Array.from({ length: 10 }, () => a.increment('n'));
    n = await startNode({ PORT: String(port), REDIS_URL: redis().url, REDIS_PREFIX: prefix, WS_RATE_PER_SECOND: '10000', WS_RATE_BURST: '10000' });
    const acks = await Promise.all(during);
    expect(new Set(acks.map((x) => x.version)).size).toBe(10);
    await until(() => b.state.n === 20, 8000);
    expect(a.state.n).toBe(20);
    a.close();
    b.close();
  }, 20000);

  it('rejects a write the server refuses', async () => {
    const c = client(n, await n.token('alice'), 'phone', randomUUID());
    await c.connect();
    await c.set('s', 'text');
    await expect(c.increment('s')).rejects.toBeInstanceOf(SessionError);
    c.close();
  });
});
