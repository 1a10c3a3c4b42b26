import { randomUUID } from 'node:crypto';
import { api, spawnNode, startRedis, testTokens, type NodeProcess, type PrivateRedis } from '@harmonyflow/testkit';
import { SessionError } from '../src';
import { closeClients, countingWebSocket, sdkClient } from './helpers';

const tokens = testTokens();
let redis: PrivateRedis;
let node: NodeProcess;
let small: NodeProcess;

beforeAll(async () => {
  redis = await startRedis();
  [node, small] = await Promise.all([
    spawnNode({ REDIS_URL: redis.url, LOG_LEVEL: 'warn' }),
    spawnNode({ REDIS_URL: redis.url, LOG_LEVEL: 'warn', MAX_MESSAGE_BYTES: '4096' }),
  ]);
});
afterAll(async () => {
  closeClients();
  for (const n of [node, small]) n.kill('SIGKILL');
  await Promise.all([node.exited, small.exited]);
  await redis.stop();
});
afterEach(() => closeClients());

describe('SessionClient writes (real gateway processes)', () => {
  it('resolves writes with {version, value}; client.version follows its own ACKs', async () => {
    const c = sdkClient({ url: node.wsUrl, token: await tokens.signAccess('alice', 'user'), deviceId: 'p', sessionId: randomUUID() });
    await c.connect();
    expect(await c.set('mood', 'calm')).toEqual({ version: 1 });
    expect(c.version).toBe(1);
    expect(await c.increment('minutes', 5)).toEqual({ version: 2, value: 5 });
    expect(await c.increment('minutes', -2)).toEqual({ version: 3, value: 3 });
    expect(await c.delete('mood')).toEqual({ version: 4 });
    expect(c.version).toBe(4);
    expect({ ...c.state }).toEqual({ minutes: 3 });
  });

  it('an oversized set rejects locally with payload_too_large; the connection stays up and the next write succeeds', async () => {
    const ws = countingWebSocket();
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');
    const c = sdkClient({ url: node.wsUrl, token, deviceId: 'p', sessionId: sid, WebSocket: ws.WS });
    await c.connect();
    const err = await c.set('blob', 'x'.repeat(70_000)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SessionError);
    expect((err as SessionError).code).toBe('payload_too_large');
    expect(c.pendingWrites).toBe(0);
    expect(await c.set('ok', true)).toEqual({ version: 1 });
    expect(ws.opened()).toBe(1);
    expect(c.status).toBe('connected');
    const snap = await api(node.url, 'GET', `/session/${sid}`, { token });
    expect(snap.body.state_data).toEqual({ ok: true });
  });

  it("learns the server's MAX_MESSAGE_BYTES from AUTH_SUCCESS and refuses larger writes without sending them", async () => {
    const ws = countingWebSocket();
    const c = sdkClient({ url: small.wsUrl, token: await tokens.signAccess('alice', 'user'), deviceId: 'p', sessionId: randomUUID(), WebSocket: ws.WS });
    await c.connect();
    const sent = ws.sent.length;
    await expect(c.set('blob', 'y'.repeat(5000))).rejects.toMatchObject({ code: 'payload_too_large', details: { limit: 4096 } });
    expect(ws.sent.length).toBe(sent);
    expect(await c.set('small', 'fits')).toEqual({ version: 1 });
    expect(ws.opened()).toBe(1);
  });

  it('a write the server refuses (version_conflict) rejects with its code and details; the queue moves on', async () => {
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');
    const a = sdkClient({ url: node.wsUrl, token, deviceId: 'a', sessionId: sid });
    const b = sdkClient({ url: small.wsUrl, token, deviceId: 'b', sessionId: sid });
    await Promise.all([a.connect(), b.connect()]);
    await a.set('k', 1);
    await b.set('k', 2);
    const err = await a.set('k', 3, { baseVersion: 1 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'version_conflict', details: { current_version: 2 } });
    expect(await a.set('other', 1)).toEqual({ version: 3 });
    expect(a.pendingWrites).toBe(0);
  });
});
