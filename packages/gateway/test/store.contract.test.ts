import Redis from 'ioredis';
import { randomUUID } from 'node:crypto';
import { decodeBusFrame, type UpdateFrame } from '@harmonyflow/protocol';
import { describeSessionStore, useRedis, type StoreHarness } from '@harmonyflow/testkit';
import { MemoryBroker, MemoryBus } from '../src/bus/memory';
import { createLogger } from '../src/log';
import { KeySpace } from '../src/store/keys';
import { MemoryStore } from '../src/store/memory';
import { RedisStore } from '../src/store/redis';
import { createRedis, whenReady } from '../src/store/redisClient';

describeSessionStore('MemoryStore', async (limits) => {
  const broker = new MemoryBroker();
  const bus = new MemoryBus(broker);
  const store = new MemoryStore(limits, bus);
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

const redis = useRedis();

describeSessionStore('RedisStore', async (limits) => {
  const log = createLogger('silent', 'test');
  const client = createRedis({ mode: 'single', url: redis().url }, log, 'command', 'contract');
  await whenReady(client, 5000);
  const keys = new KeySpace(`t${randomUUID().slice(0, 8)}:`);
  const store = new RedisStore(client, keys, limits);
  const sub = new Redis(redis().url);
  const watchers = new Map<string, UpdateFrame[]>();
  sub.on('messageBuffer', (_channel: Buffer, data: Buffer) => {
    const f = decodeBusFrame(data);
    if (f && 'version' in f) watchers.get(f.sessionId)?.push(f);
  });
  return {
    store,
    watch: async (id) => {
      const frames: UpdateFrame[] = [];
      watchers.set(id, frames);
      await sub.subscribe(keys.session(id).channel);
      return frames;
    },
    // Stored as "version|size|value": the value is what the contract compares.
    rawValue: async (id, key) => (await client.hget(keys.session(id).state, key))?.split('|').slice(2).join('|') ?? null,
    close: async () => {
      await store.close();
      client.disconnect();
      sub.disconnect();
    },
  } satisfies StoreHarness;
});
