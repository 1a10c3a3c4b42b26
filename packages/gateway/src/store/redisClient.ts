import Redis, { Cluster, type RedisOptions } from 'ioredis';
import { REDIS_COMMAND_TIMEOUT_MS, type RedisConfig } from '../config';
import type { Logger } from '../log';
import { coalesceWrites } from './coalesceWrites';
import { timeoutAfterPoll } from './timeoutAfterPoll';

export type RedisLike = Redis | Cluster;
export type RedisRole = 'command' | 'subscriber';


/**
 * Options shared by every command connection. Commands fail fast while Redis is unreachable
 * (no offline queue, no resend of in-flight commands): a mutation whose reply was lost must not be
 * replayed blindly, and callers answer 503 `store_unavailable` instead of hanging.
 */
const COMMAND_OPTIONS: RedisOptions = {
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  maxRetriesPerRequest: 0,
  connectTimeout: 3000,
  retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
};

/** Subscriber connections must keep their subscriptions across reconnects, so they queue. */
const SUBSCRIBER_OPTIONS: RedisOptions = {
  enableOfflineQueue: true,
  autoResubscribe: true,
  maxRetriesPerRequest: null,
  connectTimeout: 3000,
  retryStrategy: (attempt) => Math.min(50 * 2 ** Math.min(attempt, 6), 2000),
};

export function createRedis(cfg: RedisConfig, log: Logger, role: RedisRole, name: string): RedisLike {
  const base = role === 'command' ? COMMAND_OPTIONS : SUBSCRIBER_OPTIONS;
  // TLS: `ca` replaces the system CAs when given; the server certificate is always verified.
  const tls = cfg.tls ? { ...(cfg.tls.ca ? { ca: cfg.tls.ca } : {}) } : undefined;
  const client: RedisLike =
    cfg.mode === 'cluster'
      ? new Redis.Cluster(cfg.nodes.map((n) => ({ host: n.host, port: n.port })), {
          enableOfflineQueue: base.enableOfflineQueue,
          scaleReads: 'master',
          shardedSubscribers: role === 'subscriber',
          clusterRetryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 5), 2000),
          // With TLS, connect to seed nodes by the name given (no DNS pre-resolution to an IP), so
          // the certificate is checked against the host name the operator configured.
          ...(tls ? { dnsLookup: (address: string, callback: (err: Error | null, address: string) => void) => callback(null, address) } : {}),
          redisOptions: { ...base, password: cfg.password, connectionName: name, tls },
        })
      : new Redis(cfg.url, { ...base, connectionName: name, lazyConnect: false, tls });
  if (role === 'command') {
    timeoutAfterPoll(client, REDIS_COMMAND_TIMEOUT_MS);
    coalesceWrites(client);
  }
  track(client, role);
  // An error listener per client: ioredis emits connection errors as events, and an unhandled
  // 'error' event would take the process down during a Redis blip.
  let lastLogged = 0;
  client.on('error', (err: Error) => {
    const t = Date.now();
    if (t - lastLogged > 5000) {
      lastLogged = t;
      log.warn({ err: err.message, connection: name }, 'redis connection error');
    }
  });
  return client;
}

/**
 * Whether each live Redis client of this process is connected, by role: what `hf_redis_connected`
 * reports. Driven by ioredis events: `ready` → up; `close` (connection lost, reconnecting) → down;
 * `end` (disconnected for good, e.g. on shutdown) → forgotten.
 */
const connections = new Map<RedisLike, { readonly role: RedisRole; up: boolean }>();

function track(client: RedisLike, role: RedisRole): void {
  const entry = { role, up: client.status === 'ready' };
  connections.set(client, entry);
  client.on('ready', () => (entry.up = true));
  client.on('close', () => (entry.up = false));
  client.on('end', () => connections.delete(client));
}

/** Per role with at least one live client: true when every one of them is ready. */
export function redisConnectionStates(): Map<RedisRole, boolean> {
  const out = new Map<RedisRole, boolean>();
  for (const { role, up } of connections.values()) out.set(role, (out.get(role) ?? true) && up);
  return out;
}

/** Resolves once the client is ready, or rejects after `timeoutMs`. */
export function whenReady(client: RedisLike, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('ready', onReady);
      reject(new Error(`redis not ready after ${timeoutMs} ms (status ${client.status})`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    client.once('ready', onReady);
  });
}
