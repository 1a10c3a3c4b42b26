import { CONTRACT_LIMITS, connectRedis, describePresenceRegistry, randomKeySpace, useRedisBackends } from '@harmonyflow/testkit';
import { MemoryBroker, MemoryBus } from '../src/bus/memory';
import { MemoryPresence } from '../src/presence/memory';
import { RedisPresence } from '../src/presence/redis';
import { MemoryStore } from '../src/store/memory';
import { RedisStore } from '../src/store/redis';

describePresenceRegistry('MemoryPresence', async ({ timeoutMs, ttlSeconds }) => {
  const store = new MemoryStore({ ...CONTRACT_LIMITS, ttlSeconds }, new MemoryBus(new MemoryBroker()));
  const presence = new MemoryPresence(timeoutMs);
  store.onExpired((id) => presence.forgetSession(id));
  return { presence, store, close: () => store.close() };
});

for (const backend of useRedisBackends()) {
  describePresenceRegistry(`RedisPresence on ${backend.name}`, async ({ timeoutMs, ttlSeconds }) => {
    const client = await connectRedis(backend.config());
    const keys = randomKeySpace();
    const store = new RedisStore(client, keys, { ...CONTRACT_LIMITS, ttlSeconds });
    return {
      presence: new RedisPresence(client, keys, timeoutMs, ttlSeconds * 1000),
      store,
      readsSnapshots: true,
      devicesTtlMs: (sessionId) => client.pttl(keys.session(sessionId).devices),
      close: async () => {
        await store.close();
        client.disconnect();
      },
    };
  });
}
