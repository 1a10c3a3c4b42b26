import { randomBytes } from 'node:crypto';
import { connectRedis, describeNodeRegistry, randomKeySpace, useRedisBackends } from '@harmonyflow/testkit';
import { MemoryNodeRegistry, RedisNodeRegistry, type NodeInfo } from '../src/cluster/nodeRegistry';
import type { RedisLike } from '../src/store/redisClient';

describeNodeRegistry('MemoryNodeRegistry', async (deadAfterMs) => {
  const registry = new MemoryNodeRegistry(deadAfterMs);
  return { a: registry, b: registry, shared: false, close: async () => undefined };
});

const SESSION_TTL_MS = 3600_000;

for (const backend of useRedisBackends()) {
  describeNodeRegistry(`RedisNodeRegistry on ${backend.name}`, async (deadAfterMs) => {
    const keys = randomKeySpace();
    const [ca, cb] = await Promise.all([connectRedis(backend.config()), connectRedis(backend.config())]);
    return {
      a: new RedisNodeRegistry(ca, keys, deadAfterMs, SESSION_TTL_MS),
      b: new RedisNodeRegistry(cb, keys, deadAfterMs, SESSION_TTL_MS),
      shared: true,
      close: async () => {
        ca.disconnect();
        cb.disconnect();
      },
    };
  });

  describe(`RedisNodeRegistry key lifetimes on ${backend.name}`, () => {
    const DEAD_AFTER_MS = 3000;
    let client: RedisLike;
    let registry: RedisNodeRegistry;
    const keys = randomKeySpace();
    beforeAll(async () => {
      client = await connectRedis(backend.config());
      registry = new RedisNodeRegistry(client, keys, DEAD_AFTER_MS, SESSION_TTL_MS);
    });
    afterAll(() => client.disconnect());

    const ttls = async (inst: string) => ({ sessions: await client.pttl(keys.nodeSessions(inst)), conns: await client.pttl(keys.nodeConns(inst)) });
    const shorten = async (inst: string, ms: number) => {
      await client.pexpire(keys.nodeSessions(inst), ms);
      await client.pexpire(keys.nodeConns(inst), ms);
    };
    const info = (inst: string): NodeInfo => ({
      node_id: 'node-x', instance: inst, active_connections: 0, sessions: 1, started_at: new Date().toISOString(), updated_at: Date.now(),
    });
    const conn = (inst: string, n: number) => ({
      conn_id: `${inst}/${n}`, node_id: 'node-x', session_id: 's1', user_id: 'alice', device_id: `d${n}`, subprotocol: 'harmonyflow.v1.json', connected_at: new Date().toISOString(),
    });

    it('every write renews the session set (to the session TTL) and every heartbeat both keys (conns to 2 × deadAfterMs)', async () => {
      const x = `node-x/${randomBytes(8).toString('hex')}`;
      await registry.trackSessions(x, ['s1'], []);
      expect((await ttls(x)).sessions).toBeGreaterThan(SESSION_TTL_MS - 60_000);
      await shorten(x, 5000);
      await registry.trackSessions(x, ['s1'], []); // no change to the set
      expect((await ttls(x)).sessions).toBeGreaterThan(SESSION_TTL_MS - 60_000);
      await registry.heartbeat(info(x), { full: true, added: [conn(x, 1), conn(x, 2)], removed: [] });
      const deltas = [
        { full: false, added: [], removed: [] },
        { full: false, added: [conn(x, 3)], removed: [] },
        { full: false, added: [], removed: [`${x}/3`] },
        { full: true, added: [conn(x, 4)], removed: [] },
      ];
      for (const delta of deltas) {
        await shorten(x, 1000);
        await registry.heartbeat(info(x), delta);
        const t = await ttls(x);
        expect(t.sessions).toBeGreaterThan(SESSION_TTL_MS - 60_000);
        expect(t.conns).toBeGreaterThan(DEAD_AFTER_MS);
        expect(t.conns).toBeLessThanOrEqual(2 * DEAD_AFTER_MS);
      }
    });
  });
}
