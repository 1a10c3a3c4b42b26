import { randomUUID } from 'node:crypto';
import { SessionClient, SessionError, type ConnectionStatus } from '../src';
import { spawnNode, startRedis, testTokens, type NodeProcess, type PrivateRedis } from '@harmonyflow/testkit';
import { closeClients, countingWebSocket, sdkClient } from './helpers';

const tokens = testTokens();
let redis: PrivateRedis;
let node: NodeProcess;

beforeAll(async () => {
  redis = await startRedis();
  node = await spawnNode({ REDIS_URL: redis.url, LOG_LEVEL: 'warn', MAX_SESSIONS_PER_USER: '2', TOKEN_GRACE_MS: '1000' });
});
afterAll(async () => {
  closeClients();
  node.kill('SIGKILL');
  await node.exited;
  await redis.stop();
});
afterEach(() => closeClients());

const quiet = (ms: number) => new Promise((r) => setTimeout(r, ms));
// One user per test: MAX_SESSIONS_PER_USER is 2 here.
const user = () => `u-${randomUUID().slice(0, 8)}`;

describe('SessionClient connect and auth (real gateway process)', () => {
  it('throws no_websocket synchronously when there is no WebSocket implementation', () => {
    const g = globalThis as { WebSocket?: unknown };
    const saved = g.WebSocket;
    delete g.WebSocket; // Node 22+ has one; Node 20, the case in point, does not
    try {
      let thrown: unknown;
      try {
        new SessionClient({ url: node.wsUrl, token: 't', deviceId: 'd' });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(SessionError);
      expect((thrown as SessionError).code).toBe('no_websocket');
    } finally {
      if (saved !== undefined) g.WebSocket = saved;
    }
  });

  it('a bad token: connect() rejects with invalid_token within 5 s, after one attempt, and the client stays closed', async () => {
    const ws = countingWebSocket();
    const c = sdkClient({ url: node.wsUrl, token: 'not-a-jwt', deviceId: 'phone', sessionId: randomUUID(), WebSocket: ws.WS });
    const statuses: ConnectionStatus[] = [];
    const errors: string[] = [];
    c.on('status', (s) => statuses.push(s));
    c.on('error', (e) => errors.push(e.code));
    const started = Date.now();
    const err = await c.connect().catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeInstanceOf(SessionError);
    expect((err as SessionError).code).toBe('invalid_token');
    expect(errors).toEqual(['invalid_token']);
    expect(statuses).toEqual(['connecting', 'closed']);
    await quiet(1000);
    expect(ws.opened()).toBe(1);
    expect(c.status).toBe('closed');
  });

  it('a token function: a refused token is retried only when token() yields a different one', async () => {
    const sid = randomUUID();
    const same = countingWebSocket();
    const stubborn = sdkClient({ url: node.wsUrl, token: () => 'still-bad', deviceId: 'phone', sessionId: sid, WebSocket: same.WS });
    await expect(stubborn.connect()).rejects.toMatchObject({ code: 'invalid_token' });
    expect(same.opened()).toBe(1);

    const good = await tokens.signAccess(user(), 'user');
    const answers = ['bad-one', good];
    const ws = countingWebSocket();
    const c = sdkClient({ url: node.wsUrl, token: () => answers.shift() ?? good, deviceId: 'phone', sessionId: sid, WebSocket: ws.WS });
    await c.connect();
    expect(c.status).toBe('connected');
    expect(ws.opened()).toBe(2);
  });

  it("another user's session: connect() rejects with forbidden and does not retry", async () => {
    const sid = randomUUID();
    const bob = sdkClient({ url: node.wsUrl, token: await tokens.signAccess('bob', 'user'), deviceId: 'b', sessionId: sid });
    await bob.connect();
    const ws = countingWebSocket();
    const alice = sdkClient({ url: node.wsUrl, token: await tokens.signAccess(user(), 'user'), deviceId: 'a', sessionId: sid, WebSocket: ws.WS });
    await expect(alice.connect()).rejects.toMatchObject({ code: 'forbidden' });
    await quiet(500);
    expect(ws.opened()).toBe(1);
  });

  it('past MAX_SESSIONS_PER_USER: connect() rejects with quota_exceeded and does not retry', async () => {
    const token = await tokens.signAccess(user(), 'user');
    for (let i = 0; i < 2; i++) await sdkClient({ url: node.wsUrl, token, deviceId: 'c', sessionId: randomUUID() }).connect();
    const ws = countingWebSocket();
    const third = sdkClient({ url: node.wsUrl, token, deviceId: 'c', sessionId: randomUUID(), WebSocket: ws.WS });
    await expect(third.connect()).rejects.toMatchObject({ code: 'quota_exceeded' });
    await quiet(500);
    expect(ws.opened()).toBe(1);
  });

  it('a fixed token that expires ends the client with token_expired once the grace runs out', async () => {
    const c = sdkClient({ url: node.wsUrl, token: await tokens.signAccess(user(), 'user', 2), deviceId: 'p', sessionId: randomUUID() });
    await c.connect();
    const err = await new Promise<SessionError>((resolve) => c.once('error', resolve));
    expect(err.code).toBe('token_expired');
    expect(c.status).toBe('closed');
  });

  it('status and events: on, once and off', async () => {
    const c = sdkClient({ url: node.wsUrl, token: await tokens.signAccess(user(), 'user'), deviceId: 'p', sessionId: randomUUID() });
    const statuses: ConnectionStatus[] = [];
    let onceCalls = 0;
    let offCalls = 0;
    const removed = () => offCalls++;
    c.on('status', (s) => statuses.push(s));
    c.once('state', () => onceCalls++);
    c.on('state', removed);
    c.once('queue', removed);
    c.off('state', removed);
    c.off('queue', removed); // a once-listener is removed by the function it was given
    expect(c.status).toBe('idle');
    await c.connect();
    await c.set('a', 1);
    await c.set('b', 2);
    c.close();
    expect(statuses).toEqual(['connecting', 'connected', 'closed']);
    expect(onceCalls).toBe(1);
    expect(offCalls).toBe(0);
    await expect(c.set('c', 3)).rejects.toMatchObject({ code: 'closed' });
  });
});
