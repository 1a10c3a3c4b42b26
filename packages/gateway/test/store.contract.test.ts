import { decodeBusFrame, type UpdateFrame } from '@harmonyflow/protocol';
import { connectRedis, describeSessionStore, randomKeySpace, useRedisBackends, type StoreHarness } from '@harmonyflow/testkit';
import { MemoryBroker, MemoryBus } from '../src/bus/memory';
import { RedisBus } from '../src/bus/redis';
import type { RedisConfig } from '../src/config';
import { createLogger } from '../src/log';
import { MemoryStore, type StoreLimits } from '../src/store/memory';
import { RedisStore } from '../src/store/redis';

describeSessionStore('MemoryStore', async (limits, now = Date.now) => {
  const broker = new MemoryBroker();
  const bus = new MemoryBus(broker);
  const store = new MemoryStore(limits, bus, now);
  const watchers = new Map<string, UpdateFrame[]>();
  bus.onFrame((data) => {
    const f = decodeBusFrame(data);
    if (f && 'version' in f) watchers.get(f.sessionId)?.push(f);
  });
  return {
    store,
    watch: async (id) => {
      const frames: UpdateFrame[] = [];
      watchers.set(id, frames);
      await bus.subscribe([id]);
      return frames;
    },
    close: async () => {
      await store.close();
      await bus.close();
    },
  } satisfies StoreHarness;
});

/** Watches through a RedisBus, which subscribes the way the store publishes (SSUBSCRIBE on Redis Cluster). */
async function redisStore(cfg: RedisConfig, limits: StoreLimits, now: () => number = Date.now): Promise<StoreHarness> {
  const [client, sub] = await Promise.all([connectRedis(cfg), connectRedis(cfg, 'subscriber')]);
  const keys = randomKeySpace();
  const store = new RedisStore(client, keys, limits, now);
  const bus = new RedisBus(sub, client, keys, createLogger('silent', 'test'));
  await bus.start();
  const watchers = new Map<string, UpdateFrame[]>();
  bus.onFrame((data) => {
    const f = decodeBusFrame(data);
    if (f && 'version' in f) watchers.get(f.sessionId)?.push(f);
  });
  return {
    store,
    watch: async (id) => {
      const frames: UpdateFrame[] = [];
      watchers.set(id, frames);
      await bus.subscribe([id]);
      return frames;
    },
    // Stored as "version|size|value": the value is what the contract compares.
    rawValue: async (id, key) => (await client.hget(keys.session(id).state, key))?.split('|').slice(2).join('|') ?? null,
    close: async () => {
      await store.close();
      await bus.close();
      client.disconnect();
    },
  };
}

for (const backend of useRedisBackends()) describeSessionStore(`RedisStore on ${backend.name}`, (limits, now) => redisStore(backend.config(), limits, now));
