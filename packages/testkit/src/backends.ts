import { randomUUID } from 'node:crypto';
import { createLogger, createRedis, KeySpace, RedisStore, whenReady, type RedisConfig, type RedisLike, type StoreLimits } from '@harmonyflow/gateway';
import { CONTRACT_LIMITS } from './contract/sessionStore';
import { useRedisCluster } from './cluster';
import { useRedis, type PrivateRedis } from './redis';

/** One Redis backend a contract suite runs on; `redis` is set for the single server (it can be killed). */
export interface RedisBackend {
  readonly name: string;
  config(): RedisConfig;
  /** The same backend as a gateway process's environment (REDIS_URL or REDIS_CLUSTER_NODES). */
  env(): Record<string, string>;
  readonly redis?: () => PrivateRedis;
}

/**
 * Registers a private Redis and a private 3-master Redis Cluster for this file (started once,
 * shared by its suites) and returns them as the backends to run each contract suite on.
 */
export function useRedisBackends(): RedisBackend[] {
  const redis = useRedis();
  const cluster = useRedisCluster(3);
  return [
    { name: 'Redis', config: () => ({ mode: 'single', url: redis().url }), env: () => ({ REDIS_URL: redis().url }), redis },
    {
      name: 'Redis Cluster', config: () => ({ mode: 'cluster', nodes: cluster().hosts }), env: () => ({ REDIS_CLUSTER_NODES: cluster().spec }),
    },
  ];
}

const silent = createLogger('silent', 'test');

/** A connected client with production options (`role` as in `createRedis`), logging nowhere. */
export async function connectRedis(cfg: RedisConfig, role: 'command' | 'subscriber' = 'command'): Promise<RedisLike> {
  const client = createRedis(cfg, silent, role, `test-${role}`);
  try {
    await whenReady(client, 10_000);
  } catch (err) {
    client.disconnect();
    throw err;
  }
  return client;
}

/** A fresh random key prefix, so suites sharing a Redis never see each other's keys. */
export function randomKeySpace(): KeySpace {
  return new KeySpace(`t${randomUUID().slice(0, 8)}:`);
}

/**
 * A RedisStore on `config()` for the enclosing describe block (connected before its tests, closed
 * after), with its client for reading and writing the store's keys around it.
 */
export function useRedisStore(config: () => RedisConfig, keys: KeySpace, limits: StoreLimits = CONTRACT_LIMITS): { store: () => RedisStore; client: () => RedisLike } {
  let client: RedisLike;
  let store: RedisStore;
  beforeAll(async () => {
    client = await connectRedis(config());
    store = new RedisStore(client, keys, limits);
  });
  afterAll(async () => {
    await store.close();
    client.disconnect();
  });
  return { store: () => store, client: () => client };
}
