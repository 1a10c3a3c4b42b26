import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, eventually, spawnNode, startRedis, testTokens, type NodeProcess, type PrivateRedis } from '@harmonyflow/testkit';
import { MemoryStorage } from '../src';
import { FileStorage } from '../src/node';
import { closeClients, countingWebSocket, pendingIn, RecordingStorage, sdkClient } from './helpers';

// Offline writes applied exactly once (SPEC §10), against real gateway processes sharing a Redis.
const tokens = testTokens();
let redis: PrivateRedis;
let node: NodeProcess;
const dirs: string[] = [];

beforeAll(async () => {
  redis = await startRedis();
  node = await spawnNode({ REDIS_URL: redis.url, LOG_LEVEL: 'warn' });
});
afterAll(async () => {
  closeClients();
  await closeAllDevices();
  node.kill('SIGKILL');
  await node.exited;
  await redis.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
afterEach(() => closeClients());

function tempDir(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'hf-sdk-'));
  dirs.push(d);
  return d;
}

async function stored(sid: string) {
  const r = await api(node.url, 'GET', `/session/${sid}`, { token: await tokens.signAccess('alice', 'user') });
  return r.body as { version: number; state_data: Record<string, unknown> };
}

async function seed(sid: string, state: Record<string, unknown>): Promise<void> {
  const r = await api(node.url, 'POST', '/session/snapshot', { token: await tokens.signAccess('alice', 'user'), body: { session_id: sid, state_data: state } });
  expect(r.status).toBe(201);
}

describe('offline writes, exactly once (real gateway process)', () => {
  it('10 increments queued offline are persisted; a second client with the same storage adds +10 exactly, a third adds nothing', async () => {
    const sid = randomUUID();
    await seed(sid, { counter: 5 });
    const token = await tokens.signAccess('alice', 'user');
    const dir = tempDir();
    const key = `harmonyflow:outbox:phone:${sid}`;

    const offline = sdkClient({ url: node.wsUrl, token, deviceId: 'phone', sessionId: sid, storage: new FileStorage(dir) });
    const promises = Array.from({ length: 10 }, () => offline.increment('counter'));
    await eventually(async () => pendingIn(await new FileStorage(dir).getItem(key)).length === 10);
    expect(pendingIn(await new FileStorage(dir).getItem(key)).map((w) => w.m)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await offline.close(); // the app is closed before it ever connected
    await expect(Promise.all(promises)).rejects.toMatchObject({ code: 'closed' });

    const second = sdkClient({ url: node.wsUrl, token, deviceId: 'phone', sessionId: sid, storage: new FileStorage(dir) });
    await second.connect();
    await eventually(() => second.pendingWrites === 0 && second.state.counter === 15, 8000);
    expect((await stored(sid)).state_data.counter).toBe(15);
    await eventually(async () => pendingIn(await new FileStorage(dir).getItem(key)).length === 0);
    await second.close();

    const ws = countingWebSocket();
    const third = sdkClient({ url: node.wsUrl, token, deviceId: 'phone', sessionId: sid, storage: new FileStorage(dir), WebSocket: ws.WS });
    await third.connect();
    expect(third.state.counter).toBe(15);
    expect(ws.sent.filter((f) => f.type === T.STATE_UPDATE)).toEqual([]);
    const after = await stored(sid);
    expect(after.state_data.counter).toBe(15);
    expect(after.version).toBe(11);
    // Only the queue file is left behind (written atomically: no temporary files).
    expect(readdirSync(dir)).toEqual([`${encodeURIComponent(key)}.json`]);
  });

  it('writes whose ACKs were lost are not sent again by the next client: AUTH_SUCCESS.last_mutation_id settles them', async () => {
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');
    const storage = new RecordingStorage();
    const first = sdkClient({ url: node.wsUrl, token, deviceId: 'tablet', sessionId: sid, storage });
    await first.connect();
    await Promise.all(Array.from({ length: 5 }, () => first.increment('n')));
    await first.close();
    // The queue as saved when all five were pending: what a crash right after sending leaves.
    const key = `harmonyflow:outbox:tablet:${sid}`;
    const moment = storage.history.filter((h) => h.key === key && pendingIn(h.value).length === 5).pop();
    expect(moment).toBeDefined();
    const crashed = new MemoryStorage();
    crashed.setItem(key, moment!.value!);

    const ws = countingWebSocket();
    const next = sdkClient({ url: node.wsUrl, token, deviceId: 'tablet', sessionId: sid, storage: crashed, WebSocket: ws.WS });
    await next.connect();
    await eventually(() => next.pendingWrites === 0);
    expect(ws.sent.filter((f) => f.type === T.STATE_UPDATE)).toEqual([]);
    expect((await stored(sid)).state_data.n).toBe(5);
    expect(next.state.n).toBe(5);
    // Ids go on above the settled ones.
    await next.increment('n');
    expect(ws.sent.filter((f) => f.type === T.STATE_UPDATE).map((f) => f.payload.mutation_id)).toEqual([6]);
    expect((await stored(sid)).state_data.n).toBe(6);
  });

  it('a mutation re-sent with a new correlation_id (outside the correlation window) is a duplicate', async () => {
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');
    const dev = await connectDevice(node.wsUrl);
    await dev.auth({ token, device_id: 'raw', session_id: sid });
    const inc = (mutationId: number, corr: string) => {
      dev.send({ type: T.STATE_UPDATE, correlation_id: corr, payload: { key: 'n', operation: 'INCREMENT', value: 1, mutation_id: mutationId } });
      return dev.waitFor((e) => e.type !== T.SNAPSHOT_RESPONSE && e.correlation_id === corr);
    };
    expect((await inc(1, 'a')).payload).toMatchObject({ version: 1, value: 1 });
    const dup = await inc(1, 'b');
    expect(dup.type).toBe(T.STATE_UPDATE_ACK);
    expect(dup.payload).toMatchObject({ correlation_id: 'b', mutation_id: 1, duplicate: true, version: 1 });
    expect((await inc(2, 'c')).payload).toMatchObject({ version: 2, value: 2 });
    expect((await inc(1, 'd')).payload).toMatchObject({ duplicate: true, version: 2 });
    expect((await stored(sid)).state_data.n).toBe(2);
    const again = await connectDevice(node.wsUrl);
    const ok = await again.auth({ token, device_id: 'raw', session_id: sid });
    expect(ok.payload.last_mutation_id).toBe(2);
  });

  it('writes made while the node is down are queued, persisted, and applied once when it is back', async () => {
    const redis2 = await startRedis();
    let n2 = await spawnNode({ REDIS_URL: redis2.url, LOG_LEVEL: 'warn' });
    try {
      const sid = randomUUID();
      const token = await tokens.signAccess('alice', 'user');
      const dir = tempDir();
      const c = sdkClient({ url: n2.wsUrl, token, deviceId: 'phone', sessionId: sid, storage: new FileStorage(dir) });
      await c.connect();
      await c.increment('n');
      n2.kill('SIGKILL');
      await n2.exited;
      await eventually(() => c.status === 'reconnecting');
      const during = [c.increment('n'), c.increment('n'), c.set('note', 'offline')];
      await eventually(async () => pendingIn(await new FileStorage(dir).getItem(`harmonyflow:outbox:phone:${sid}`)).length === 3);
      n2 = await spawnNode({ REDIS_URL: redis2.url, LOG_LEVEL: 'warn', PORT: String(n2.port) });
      const results = await Promise.all(during);
      expect(results.map((r) => r.version)).toEqual([2, 3, 4]);
      const snap = await api(n2.url, 'GET', `/session/${sid}`, { token });
      expect(snap.body.state_data).toEqual({ n: 3, note: 'offline' });
      expect(c.state).toEqual(snap.body.state_data);
      expect(c.version).toBe(4);
    } finally {
      n2.kill('SIGKILL');
      await n2.exited;
      await redis2.stop();
    }
  }, 30_000);

  it('a client process SIGKILLed mid-stream leaves its queue in FileStorage; the next client finishes it, each write applied once', async () => {
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');
    const dir = tempDir();
    const child = spawn(process.execPath, [path.join(__dirname, 'fixtures/writer.js'), node.wsUrl, token, sid, dir, '50'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await eventually(() => out.includes('acked 10'), 10_000);
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    expect(out).not.toContain('failed');
    const before = (await stored(sid)).state_data.count as number;
    expect(before).toBeGreaterThanOrEqual(10);
    expect(before).toBeLessThan(50);

    const next = sdkClient({ url: node.wsUrl, token, deviceId: 'killed', sessionId: sid, storage: new FileStorage(dir) });
    await next.connect();
    await eventually(() => next.pendingWrites === 0, 10_000);
    expect((await stored(sid)).state_data.count).toBe(50);
    expect(next.state.count).toBe(50);
  }, 30_000);
});
