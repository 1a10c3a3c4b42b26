import { connectRedis, describeBus, randomKeySpace, useRedisBackends, type BusPair } from '@harmonyflow/testkit';
import { MemoryBroker, MemoryBus } from '../src/bus/memory';
import { RedisBus } from '../src/bus/redis';
import type { RedisConfig } from '../src/config';
import { createLogger } from '../src/log';

describeBus('MemoryBus', async () => {
  const broker = new MemoryBroker();
  const a = new MemoryBus(broker);
  const b = new MemoryBus(broker);
  return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
});

/** Two nodes as `node.ts` wires them: each a subscriber and a command connection, one key prefix. */
async function redisBuses(cfg: RedisConfig): Promise<BusPair> {
  const keys = randomKeySpace();
  const log = createLogger('silent', 'test');
  const node = async () => {
    const [sub, cmd] = await Promise.all([connectRedis(cfg, 'subscriber'), connectRedis(cfg, 'command')]);
    const bus = new RedisBus(sub, cmd, keys, log);
    await bus.start();
    return { bus, close: async () => { await bus.close(); cmd.disconnect(); } };
  };
  const [a, b] = await Promise.all([node(), node()]);
  return { a: a.bus, b: b.bus, close: async () => void (await Promise.all([a.close(), b.close()])) };
}

for (const backend of useRedisBackends()) {
  const redis = backend.redis;
  describeBus(`RedisBus on ${backend.name}`, () => redisBuses(backend.config()), redis && { kill: () => redis().kill(), restart: () => redis().restart() });
}
