import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { BusKind, encodeControlFrame, type ControlFrame } from '@harmonyflow/protocol';
import { AdminMetrics } from './admin';
import { TokenService } from './auth/tokens';
import { BusCanary } from './bus/canary';
import { MemoryBroker, MemoryBus } from './bus/memory';
import { RedisBus } from './bus/redis';
import type { Bus } from './bus/types';
import { connectionId, newInstanceId } from './cluster/instance';
import { Membership } from './cluster/membership';
import { MemoryNodeRegistry, RedisNodeRegistry, type LocalConnection, type NodeRegistry } from './cluster/nodeRegistry';
import type { Config } from './config';
import { notFound } from './errors';
import { registerAdminRoutes } from './http/admin';
import { registerAuthRoutes } from './http/auth';
import { registerDeviceRoutes } from './http/devices';
import { registerDocsRoutes } from './http/docs';
import { registerOpsRoutes } from './http/ops';
import { registerSessionRoutes } from './http/session';
import { route, type HttpDeps } from './http/uws';
import { Hub } from './hub';
import { SessionKeepAlive } from './keepAlive';
import { createLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { every } from './periodic';
import { perTick } from './perTick';
import { MemoryPresence } from './presence/memory';
import { RedisPresence } from './presence/redis';
import type { PresenceRegistry } from './presence/types';
import { SessionService } from './sessions';
import { KeySpace } from './store/keys';
import { MemoryStore } from './store/memory';
import { RedisStore } from './store/redis';
import { createRedis, whenReady, type RedisLike } from './store/redisClient';
import type { SessionStore, StoreLimits } from './store/types';
import { uws, uwsIsNative } from './uwsRuntime';
import { connOf, type Conn } from './ws/conn';
import type { WsContext } from './ws/context';
import { deliverControl } from './ws/control';
import { WsGateway } from './ws/gateway';
import { SocketIO } from './ws/io';
import { Limits } from './ws/limits';
import { PresenceTracker } from './ws/presenceTracker';

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const SERVICE_VERSION: string = (require('../package.json') as { version: string }).version;

export interface NodeOptions {
  readonly logger?: Logger;
}

export interface GatewayNode {
  readonly config: Config;
  /** This process's incarnation: `<NODE_ID>/<random>`. */
  readonly instance: string;
  readonly app: TemplatedApp;
  readonly store: SessionStore;
  readonly bus: Bus;
  readonly presence: PresenceRegistry;
  readonly registry: NodeRegistry;
  readonly hub: Hub;
  readonly ws: WsGateway;
  readonly tokens: TokenService;
  readonly log: Logger;
  readonly metrics: Metrics;
  port: number;
  listen(): Promise<number>;
  /**
   * Graceful: /ready 503 and new upgrades refused, RECONNECT + 1012 to sockets spread over a few
   * seconds, in-flight work finished, presence and registry left cleanly, the listen socket closed
   * last, Redis released.
   */
  shutdown(): Promise<void>;
}

export function storeLimits(config: Config): StoreLimits {
  return {
    ttlSeconds: config.snapshotTtlSeconds, maxStateBytes: config.maxStateBytes, logLength: config.logLength,
    logMaxBytes: config.logMaxBytes, maxSessionsPerUser: config.maxSessionsPerUser,
    maxHandoffsPerSession: config.maxHandoffsPerSession,
  };
}

interface Backends {
  store: SessionStore;
  bus: Bus;
  presence: PresenceRegistry;
  registry: NodeRegistry;
  redisClients: RedisLike[];
}

async function connectBackends(config: Config, log: Logger, instance: string, deadAfterMs: number): Promise<Backends> {
  const keys = new KeySpace(config.redisPrefix);
  const limits = storeLimits(config);
  if (!config.redis) {
    const bus = new MemoryBus(new MemoryBroker());
    const store = new MemoryStore(limits, bus);
    const presence = new MemoryPresence(config.presenceTimeoutMs);
    store.onExpired((id) => presence.forgetSession(id));
    return { store, bus, presence, registry: new MemoryNodeRegistry(deadAfterMs), redisClients: [] };
  }
  const cmd = createRedis(config.redis, log, 'command', `hf:${instance}:cmd`);
  const sub = createRedis(config.redis, log, 'subscriber', `hf:${instance}:sub`);
  try {
    await Promise.all([whenReady(cmd, 10_000), whenReady(sub, 10_000)]);
  } catch (err) {
    cmd.disconnect();
    sub.disconnect();
    throw err;
  }
  const store = new RedisStore(cmd, keys, limits, Date.now, (err) => log.warn({ err: (err as Error).message }, 'session index update failed'),
    (message) => log.warn(message));
  const bus = new RedisBus(sub, cmd, keys, log);
  await bus.start();
  const ttlMs = config.snapshotTtlSeconds * 1000;
  return {
    store, bus, redisClients: [cmd, sub],
    presence: new RedisPresence(cmd, keys, config.presenceTimeoutMs, ttlMs),
    registry: new RedisNodeRegistry(cmd, keys, deadAfterMs, ttlMs + Math.floor(ttlMs / 8)),
  };
}

/** Wires store, bus, presence, membership, auth, hub, HTTP and WebSocket into one node. Does not listen yet. */
export async function createNode(config: Config, opts: NodeOptions = {}): Promise<GatewayNode> {
  const instance = newInstanceId(config.nodeId);
  const log = opts.logger ?? createLogger(config.logLevel, config.nodeId);
  if (!uwsIsNative) log.warn('uWebSockets.js native binary not loaded: running on its JS fallback');
  const metrics = new Metrics();
  const deadAfterMs = Math.max(1000, Math.floor(config.presenceTimeoutMs * 0.75));
  const heartbeatMs = Math.max(100, Math.min(5000, Math.floor(config.presenceTimeoutMs / 5)));
  const { store, bus, presence, registry, redisClients } = await connectBackends(config, log, instance, deadAfterMs);

  const tokens = new TokenService(config.jwt);
  const sessions = new SessionService(store, metrics, instance, config.storeBacklogLimitMs);
  metrics.storeBacklogMs = () => store.backlogMs(performance.now());
  const inflight = { count: 0 };
  const state = { draining: false, startedAt: Date.now() };
  const app = uws.App();
  const hub = new Hub(bus, store, metrics, log, {
    instance,
    slowConsumerBytes: 256 * 1024,
    // Recorded before any device of the session is counted here, so a reaper can always find them;
    // the sessions joined in one event-loop turn are recorded together.
    trackSession: perTick((sessionIds: string[]) => registry.trackSessions(instance, sessionIds, [])),
  });
  const publish = (sessionId: string, kind: ControlFrame['kind'], body: Record<string, unknown>) =>
    bus.publish(sessionId, encodeControlFrame({ kind, sessionId, originNode: instance, body }));
  const publishGlobal = (kind: ControlFrame['kind'], body: Record<string, unknown>) =>
    bus.publishGlobal(encodeControlFrame({ kind, sessionId: '', originNode: instance, body }));

  const io = new SocketIO(metrics, log);
  // Membership needs the gateway's sockets and the gateway reports to membership: both are
  // resolved when called, after both exist.
  let membership: Membership | null = null;
  const connectionRecord = (c: Conn): LocalConnection => ({
    conn_id: connectionId(instance, c.id), node_id: config.nodeId, session_id: c.sessionId, user_id: c.userId, device_id: c.deviceId,
    subprotocol: c.binary ? 'harmonyflow.v1.proto' : 'harmonyflow.v1.json', connected_at: new Date(c.openedAt).toISOString(),
  });
  const tracker = new PresenceTracker(presence, hub, instance, publish, log, { store, presenceTimeoutMs: config.presenceTimeoutMs });
  let gateway: WsGateway | null = null;
  const ctx: WsContext = {
    config, instance, tokens, sessions, presence, tracker, hub, metrics, log, inflight, io, limits: new Limits(config, io),
    dispatch: (ws, message, isBinary) => gateway!.dispatch(ws, message, isBinary),
    connections: {
      up: (c) => membership?.connectionUp(connectionRecord(c)),
      down: (c) => membership?.connectionDown(connectionId(instance, c.id)),
    },
  };
  const ws = (gateway = new WsGateway(app, ctx));
  tracker.start(Math.max(50, config.presenceTimeoutMs / 4), () => ws.sockets);
  hub.onEpochChanged = (sessionId) => tracker.recountSession(sessionId);

  const canary = new BusCanary(bus, instance, Math.max(200, Math.min(2000, heartbeatMs)), metrics);
  hub.onControl = (f) => {
    if (f.kind === BusKind.CANARY) canary.heard(f);
    else deliverControl(f, hub, app, metrics);
  };
  await canary.start();

  // Sockets are kept in open order, and local ids grow with it.
  function* connectionsAfter(after: number): Iterable<{ seq: number; conn: LocalConnection }> {
    for (const s of ws.sockets) {
      const c = connOf(s);
      if (c.id > after && c.authed && !c.closed) yield { seq: c.id, conn: connectionRecord(c) };
    }
  }
  function* localConnections(): Iterable<LocalConnection> {
    for (const { conn } of connectionsAfter(0)) yield conn;
  }
  membership = new Membership(registry, presence, {
    sessionIds: () => hub.localSessionIds(),
    drainLeftSessions: () => hub.drainLeftSessions(),
    hosts: (sessionId) => hub.connsOf(sessionId) !== undefined,
    unsettledSessionIds: () => tracker.dirtySessionIds(),
    connections: localConnections,
    figures: () => ({ active_connections: ws.connectionCount, sessions: hub.sessionCount, store: store.kind }),
  }, {
    deviceTimedOut: (sessionId, deviceId) => tracker.left(sessionId, deviceId, 'timeout'),
    recount: () => tracker.recountAll(),
  }, log, { instance, startedAt: state.startedAt, heartbeatMs });

  const adminMetrics = new AdminMetrics(store, registry, { instance, self: () => membership.selfInfo(), connectionsAfter });
  const deps: HttpDeps = { tokens, log, metrics, bodyLimit: config.maxStateBytes + 64 * 1024, inflight };
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
      return canary.silent() ? 'bus_silent' : null;
    },
    redisStatus: async () => (store.kind === 'memory' ? 'embedded' : (await store.ping()) ? 'up' : 'down'),
    activeConnections: () => ws.connectionCount,
  }, metrics);
  registerAuthRoutes(app, deps, tokens, store, config.jwt);
  registerSessionRoutes(app, deps, sessions);
  registerDeviceRoutes(app, deps, { sessions, presence, handoffTtlMs: config.handoffTtlMs, publish });
  registerAdminRoutes(app, deps, adminMetrics, store, publishGlobal);
  registerDocsRoutes(app, deps);
  for (const m of ['get', 'post', 'del', 'put'] as const) {
    route(app, deps, m, '/*', { name: 'unmatched', auth: 'none' }, () => {
      throw notFound('no such route');
    });
  }

  const keepAlive = new SessionKeepAlive(store, () => hub.localSessionIds(), log);
  const timers = [
    every(config.consistencyCheckMs, log, 'version check', async () => {
      if (state.draining) return;
      const healed = await hub.checkVersions(Math.max(1000, config.consistencyCheckMs));
      if (healed > 0) log.warn({ sockets: healed }, 'version check healed sockets that missed updates');
    }),
    every(4000, log, 'admin update', async () => {
      if (app.numSubscribers('admins/j') + app.numSubscribers('admins/p') === 0) return;
      const payload = await adminMetrics.all();
      deliverControl({ kind: BusKind.BROADCAST, sessionId: '', originNode: instance, body: { admin_update: true, payload } }, hub, app, metrics);
    }),
  ];

  let listenSocket: us_listen_socket | null = null;
  const node: GatewayNode = {
    config, instance, app, store, bus, presence, registry, hub, ws, tokens, log, metrics, port: 0,
    listen: async () => {
      // Registered, and earlier incarnations of this NODE_ID taken over, before any connection.
      await membership.start();
      keepAlive.start(SessionKeepAlive.periodFor(config.snapshotTtlSeconds));
      return new Promise((resolve, reject) => {
        app.listen(config.host, config.port, (sock) => {
          if (!sock) return reject(new Error(`cannot listen on ${config.host}:${config.port}`));
          listenSocket = sock;
          node.port = uws.us_socket_local_port(sock as unknown as Parameters<typeof uws.us_socket_local_port>[0]);
          log.info({ host: config.host, port: node.port, store: store.kind, instance }, 'gateway listening');
          resolve(node.port);
        });
      });
    },
    shutdown: async () => {
      if (state.draining) return;
      state.draining = true;
      ws.refuseNew();
      await Promise.all([...timers.map((t) => t.stop()), keepAlive.stop()]);
      canary.stop();
      await ws.drain(Math.min(config.drainTimeoutMs, 3000));
      const deadline = Date.now() + config.drainTimeoutMs;
      while ((inflight.count > 0 || ws.connectionCount > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      ws.stop();
      await tracker.stop();
      // Counts that failed updates left off are set right (and announced) while we still can;
      // leave() zeroes whatever stays unsettled.
      await tracker.reconcile().catch((err) => log.warn({ err: (err as Error).message }, 'presence reconciliation at shutdown failed'));
      // Leave cleanly so nobody has to reap us; if Redis is away, a survivor will.
      try {
        const gone = await membership.leave();
        await Promise.all(gone.map((g) => tracker.left(g.sessionId, g.deviceId, 'disconnected')));
      } catch (err) {
        log.warn({ err: (err as Error).message }, 'could not leave the cluster cleanly; a survivor will reap this node');
      }
      // /health and /ready answered throughout the drain; the listen socket goes last.
      if (listenSocket) uws.us_listen_socket_close(listenSocket);
      listenSocket = null;
      await bus.close();
      await store.close();
      for (const c of redisClients) c.disconnect();
      log.info('gateway stopped');
    },
  };
  return node;
}
