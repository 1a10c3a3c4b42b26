import { randomUUID } from 'node:crypto';
import { api, eventually, spawnNode, startRedis, testTokens, type NodeProcess, type PrivateRedis } from '@harmonyflow/testkit';
import { closeClients, sdkClient } from './helpers';

// SPEC §9: a session created anew (here: Redis lost everything) is a new epoch whose versions
// start again; a connected client must take its snapshot and its updates although their
// versions are lower than what it saw before.
const tokens = testTokens();
let redis: PrivateRedis;
let node: NodeProcess;

beforeAll(async () => {
  redis = await startRedis();
  node = await spawnNode({ REDIS_URL: redis.url, LOG_LEVEL: 'warn', CONSISTENCY_CHECK_MS: '200' });
});
afterAll(async () => {
  closeClients();
  node.kill('SIGKILL');
  await node.exited;
  await redis.stop();
});

describe('SessionClient across a new epoch (real gateway process)', () => {
  it('accepts the new epoch at a lower version, applies its updates, and keeps writing', async () => {
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');
    const watcher = sdkClient({ url: node.wsUrl, token, deviceId: 'watcher', sessionId: sid });
    await watcher.connect();
    for (let i = 0; i < 6; i++) await watcher.increment('n');
    const oldEpoch = watcher.epoch;
    expect(oldEpoch).toEqual(expect.any(String));
    expect(watcher.version).toBe(6);

    await redis.restart(); // empty: the session is gone
    await eventually(async () => (await api(node.url, 'GET', '/health')).body.redis === 'up', 10_000);
    const created = await api(node.url, 'POST', '/session/snapshot', { token, body: { session_id: sid, state_data: { fresh: 1 } } });
    expect(created.status).toBe(201);

    await eventually(() => watcher.epoch !== oldEpoch && watcher.version === 1, 10_000);
    expect({ ...watcher.state }).toEqual({ fresh: 1 });
    const writer = sdkClient({ url: node.wsUrl, token, deviceId: 'writer', sessionId: sid });
    await writer.connect();
    await writer.increment('n');
    await eventually(() => watcher.state.n === 1 && watcher.version === 2);
    expect(await watcher.increment('n')).toMatchObject({ version: 3, value: 2 });
    const snap = await api(node.url, 'GET', `/session/${sid}`, { token });
    expect(snap.body).toMatchObject({ version: 3, state_data: { fresh: 1, n: 2 }, epoch: watcher.epoch });
  }, 30_000);
});
