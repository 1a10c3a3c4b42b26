import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { TokenService } from './auth/tokens';
import { MemoryBroker, MemoryBus } from './bus/memory';
import type { Bus } from './bus/types';
import type { Config } from './config';
import { registerAuthRoutes } from './http/auth';
import { registerOpsRoutes } from './http/ops';
import { registerSessionRoutes } from './http/session';
import { route, type HttpDeps } from './http/uws';
import { createLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { SessionService } from './sessions';
import { KeySpace } from './store/keys';
import { MemoryStore, type StoreLimits } from './store/memory';
import { RedisStore } from './store/redis';
import { createRedis, whenReady, type RedisLike } from './store/redisClient';
import type { SessionStore } from './store/types';
import { uws, uwsIsNative } from './uwsRuntime';
import { notFound } from './errors';

export const SERVICE_VERSION = '1.1.0';

export interface NodeOptions {
  /** In-process nodes of one test share a broker instead of Redis (embedded mode only). */
  readonly broker?: MemoryBroker;
  /** Shared in-memory store for in-process multi-node tests. */
  readonly memoryStore?: MemoryStore;
  readonly logger?: Logger;
}

export interface GatewayNode {
  readonly config: Config;
  readonly app: TemplatedApp;
  readonly store: SessionStore;
  readonly bus: Bus;
  readonly tokens: TokenService;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** The bound port (after `listen`). */
  port: number;
  listen(): Promise<number>;
  /** Graceful: not ready, stop accepting, finish in-flight work, close connections, release Redis. */
  shutdown(): Promise<void>;
}

export function storeLimits(config: Config): StoreLimits {
  return { ttlSeconds: config.snapshotTtlSeconds, maxStateBytes: config.maxStateBytes, logLength: 1000, idempotencyTtlMs: 300_000 };
}

/** Wires store, bus, auth, HTTP (and WS) into one gateway node. Does not listen yet. */
export async function createNode(config: Config, opts: NodeOptions = {}): Promise<GatewayNode> {
  const log = opts.logger ?? createLogger(config.logLevel, config.nodeId);
  if (!uwsIsNative) log.warn('uWebSockets.js native binary not loaded: running on its JS fallback');
  const metrics = new Metrics();
  const keys = new KeySpace(config.redisPrefix);
  const limits = storeLimits(config);

  let store: SessionStore;
  let bus: Bus;
  const redisClients: RedisLike[] = [];
  if (config.redis) {
    const cmd = createRedis(config.redis, log, 'command', `hf:${config.nodeId}:cmd`);
    redisClients.push(cmd);
    await whenReady(cmd, 10_000).catch((err) => {
      cmd.disconnect();
      throw err;
    });
    store = new RedisStore(cmd, keys, limits);
    const broker = new MemoryBroker(); // replaced by the Redis bus in the cluster issue
    bus = new MemoryBus(broker);
  } else {
    const broker = opts.broker ?? new MemoryBroker();
    const memBus = new MemoryBus(broker);
    bus = memBus;
    store = opts.memoryStore ?? new MemoryStore(limits, memBus);
  }

  const tokens = new TokenService(config.jwt);
  const sessions = new SessionService(store, metrics, config.nodeId, config.snapshotTtlSeconds);
  const inflight = { count: 0 };
  const deps: HttpDeps = { tokens, log, metrics, bodyLimit: config.maxStateBytes + 64 * 1024, inflight };
  const app = uws.App();
  const state = { draining: false, startedAt: Date.now() };

  registerOpsRoutes(app, deps, {
    nodeId: config.nodeId,
    version: SERVICE_VERSION,
    startedAt: state.startedAt,
    ttlSeconds: config.snapshotTtlSeconds,
    storeKind: store.kind,
    metricsToken: config.metricsToken,
    notReadyReason: async () => {
      if (state.draining) return 'draining';
      if (!(await store.ping())) return 'store_unavailable';
      return null;
    },
    redisStatus: async () => (store.kind === 'memory' ? 'embedded' : (await store.ping()) ? 'up' : 'down'),
    activeConnections: () => 0,
  }, metrics);
  registerAuthRoutes(app, deps, tokens, store, config.jwt);
  registerSessionRoutes(app, deps, sessions);
  route(app, deps, 'get', '/*', { name: 'unmatched', auth: 'none' }, () => {
    throw notFound('no such route');
  });
  for (const m of ['post', 'del', 'put'] as const) {
    route(app, deps, m, '/*', { name: 'unmatched', auth: 'none' }, () => {
      throw notFound('no such route');
    });
  }

  let listenSocket: us_listen_socket | null = null;
  const node: GatewayNode = {
    config, app, store, bus, tokens, log, metrics, port: 0,
    listen: () =>
      new Promise((resolve, reject) => {
        app.listen(config.host, config.port, (sock) => {
          if (!sock) return reject(new Error(`cannot listen on ${config.host}:${config.port}`));
          listenSocket = sock;
          node.port = uws.us_socket_local_port(sock as unknown as Parameters<typeof uws.us_socket_local_port>[0]);
          log.info({ host: config.host, port: node.port, store: store.kind }, 'gateway listening');
          resolve(node.port);
        });
      }),
    shutdown: async () => {
      if (state.draining) return;
      state.draining = true;
      if (listenSocket) uws.us_listen_socket_close(listenSocket);
      listenSocket = null;
      const deadline = Date.now() + config.drainTimeoutMs;
      while (inflight.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      await bus.close();
      await store.close();
      for (const c of redisClients) c.disconnect();
      log.info('gateway stopped');
    },
  };
  return node;
}
