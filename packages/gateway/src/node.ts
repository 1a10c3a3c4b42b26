import { connOf, type Conn } from './ws/conn';
import type { TemplatedApp, us_listen_socket } from 'uWebSockets.js';
import { BusKind, encodeControlFrame, type ControlFrame } from '@harmonyflow/protocol';
import { AdminMetrics } from './admin';
import { TokenService } from './auth/tokens';
import { MemoryBroker, MemoryBus } from './bus/memory';
import { RedisBus } from './bus/redis';
import type { Bus } from './bus/types';
import { MemoryNodeRegistry, RedisNodeRegistry, type NodeRegistry } from './cluster/nodeRegistry';
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
import { createLogger, type Logger } from './log';
import { Metrics } from './metrics';
import { MemoryPresence } from './presence/memory';
import { RedisPresence } from './presence/redis';
import type { PresenceRegistry } from './presence/types';
import { SessionService } from './sessions';
import { KeySpace } from './store/keys';
import { MemoryStore, type StoreLimits } from './store/memory';
import { RedisStore } from './store/redis';
import { createRedis, whenReady, type RedisLike } from './store/redisClient';
import type { SessionStore } from './store/types';
import { uws, uwsIsNative } from './uwsRuntime';
import { deliverControl } from './ws/control';
import { WsGateway } from './ws/gateway';

export const SERVICE_VERSION = '1.1.0';

export interface NodeOptions {
  readonly logger?: Logger;
}

export interface GatewayNode {
  readonly config: Config;
  readonly app: TemplatedApp;
  readonly store: SessionStore;
  readonly bus: Bus;
  readonly presence: PresenceRegistry;
  readonly hub: Hub;
  readonly ws: WsGateway;
  readonly tokens: TokenService;
  readonly log: Logger;
  readonly metrics: Metrics;
  port: number;
  listen(): Promise<number>;
  /** Graceful: not ready, stop accepting, RECONNECT + 1012 to sockets, finish in-flight work, release Redis. */
  shutdown(): Promise<void>;
}

export function storeLimits(config: Config): StoreLimits {
  return { ttlSeconds: config.snapshotTtlSeconds, maxStateBytes: config.maxStateBytes, logLength: 1000, idempotencyTtlMs: 300_000 };
}

/** Wires store, bus, presence, registry, auth, hub, HTTP and WebSocket into one node. Does not listen yet. */
export async function createNode(config: Config, opts: NodeOptions = {}): Promise<GatewayNode> {
  const log = opts.logger ?? createLogger(config.logLevel, config.nodeId);
  if (!uwsIsNative) log.warn('uWebSockets.js native binary not loaded: running on its JS fallback');
  const metrics = new Metrics();
  const keys = new KeySpace(config.redisPrefix);
  const limits = storeLimits(config);
  const deadAfterMs = Math.max(1000, Math.floor(config.presenceTimeoutMs * 0.75));
  const heartbeatMs = Math.max(100, Math.min(5000, Math.floor(config.presenceTimeoutMs / 5)));

  let store: SessionStore;
  let bus: Bus;
  let presence: PresenceRegistry;
  let registry: NodeRegistry;
  const redisClients: RedisLike[] = [];
  if (config.redis) {
    const cmd = createRedis(config.redis, log, 'command', `hf:${config.nodeId}:cmd`);
    const sub = createRedis(config.redis, log, 'subscriber', `hf:${config.nodeId}:sub`);
    redisClients.push(cmd, sub);
    try {
      await Promise.all([whenReady(cmd, 10_000), whenReady(sub, 10_000)]);
    } catch (err) {
      for (const c of redisClients) c.disconnect();
      throw err;
    }
    store = new RedisStore(cmd, keys, limits);
    const redisBus = new RedisBus(sub, cmd, keys, log);
    await redisBus.start();
    bus = redisBus;
    presence = new RedisPresence(cmd, keys, config.presenceTimeoutMs, config.snapshotTtlSeconds * 1000);
    registry = new RedisNodeRegistry(cmd, keys, deadAfterMs);
  } else {
    const memBus = new MemoryBus(new MemoryBroker());
    bus = memBus;
    store = new MemoryStore(limits, memBus);
    presence = new MemoryPresence(config.presenceTimeoutMs);
    registry = new MemoryNodeRegistry(deadAfterMs);
  }

  const tokens = new TokenService(config.jwt);
  const sessions = new SessionService(store, metrics, config.nodeId, config.snapshotTtlSeconds);
  const inflight = { count: 0 };
  const deps: HttpDeps = { tokens, log, metrics, bodyLimit: config.maxStateBytes + 64 * 1024, inflight };
  const app = uws.App();
  const state = { draining: false, startedAt: Date.now() };
  const hub = new Hub(bus, store, metrics, log, {
    nodeId: config.nodeId,
    slowConsumerBytes: 256 * 1024,
    trackSession: (sessionId) => registry.trackSessions(config.nodeId, [sessionId], []),
  });
  const ws = new WsGateway(app, { config, tokens, sessions, presence, hub, bus, metrics, log, inflight });
  // Canary: a frame to ourselves through the same kind of channel sessions use. A node whose bus
  // silently stopped delivering (e.g. subscribed to nothing after a failover) turns not-ready.
  const canaryId = `canary-${config.nodeId}`;
  const canaryEveryMs = Math.max(200, Math.min(2000, heartbeatMs));
  const canary = { sentAt: 0, heardAt: Date.now() };
  hub.onControl = (f) => {
    if (f.kind === BusKind.CANARY) {
      if (f.originNode === config.nodeId) {
        canary.heardAt = Date.now();
        metrics.busLag.observe(Math.max(0, Date.now() - Number(f.body.sent_at)) / 1000);
      }
      return;
    }
    deliverControl(f, hub, app, metrics);
  };
  await bus.subscribe([canaryId]);
  const publish = (sessionId: string, kind: ControlFrame['kind'], body: Record<string, unknown>) => ws.publishControl(sessionId, kind, body);
  const publishGlobal = (kind: ControlFrame['kind'], body: Record<string, unknown>) =>
    bus.publishGlobal(encodeControlFrame({ kind, sessionId: '', originNode: config.nodeId, body }));
  const adminMetrics = new AdminMetrics(store, registry);

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
      if (canary.sentAt > canary.heardAt && Date.now() - canary.sentAt > 3 * canaryEveryMs) return 'bus_silent';
      return null;
    },
    redisStatus: async () => (store.kind === 'memory' ? 'embedded' : (await store.ping()) ? 'up' : 'down'),
    activeConnections: () => ws.connectionCount,
  }, metrics);
  registerAuthRoutes(app, deps, tokens, store, config.jwt);
  registerSessionRoutes(app, deps, sessions);
  registerDeviceRoutes(app, deps, { sessions, presence, handoffTtlMs: config.handoffTtlMs, publish });
  registerAdminRoutes(app, deps, adminMetrics, store, registry, publishGlobal);
  registerDocsRoutes(app, deps);
  for (const m of ['get', 'post', 'del', 'put'] as const) {
    route(app, deps, m, '/*', { name: 'unmatched', auth: 'none' }, () => {
      throw notFound('no such route');
    });
  }

  // Heartbeat into the node registry, reap dead nodes' devices, push ADMIN_UPDATE.
  const REWRITE_EVERY = 12;
  let beats = 0;
  let reported = new Set<string>();
  const heartbeat = async () => {
    if (await registry.takeReapedMark(config.nodeId, state.startedAt)) {
      // We were declared dead (a long pause) and our devices were counted out: count them back in.
      log.warn('this node was reaped while alive; re-registering its sessions and devices');
      await registry.trackSessions(config.nodeId, hub.localSessionIds(), []);
      beats = 0; // forget() dropped our connection list too
      for (const s of ws.sockets) {
        const c = connOf(s);
        if (!c.counted || c.closed) continue;
        const { first } = await presence.connect(c.sessionId, { deviceId: c.deviceId }, config.nodeId, Date.now());
        if (first) ws.announceJoin(c).catch((err) => log.warn({ err: (err as Error).message }, 'DEVICE_JOINED after reap failed'));
      }
    }
    const changes = hub.drainSessionChanges();
    if (changes.added.length || changes.removed.length) await registry.trackSessions(config.nodeId, changes.added, changes.removed);
    // The connection list goes as a delta; whole every REWRITE_EVERY beats (or after a failed beat).
    const full = beats++ % REWRITE_EVERY === 0;
    const current = new Map<string, Conn>();
    for (const s of ws.sockets) {
      const c = connOf(s);
      if (c.authed && !c.closed) current.set(`${config.nodeId}/${c.id}`, c);
    }
    const added = [...current].filter(([id]) => full || !reported.has(id)).map(([id, c]) => ({
      conn_id: id, node_id: config.nodeId, session_id: c.sessionId, user_id: c.userId, device_id: c.deviceId,
      subprotocol: c.binary ? 'harmonyflow.v1.proto' : 'harmonyflow.v1.json', connected_at: new Date(c.openedAt).toISOString(),
    }));
    const removed = full ? [] : [...reported].filter((id) => !current.has(id));
    try {
      await registry.heartbeat({
        node_id: config.nodeId, active_connections: ws.connectionCount, sessions: hub.sessionCount,
        started_at: new Date(state.startedAt).toISOString(), updated_at: Date.now(), store: store.kind,
      }, { full, added, removed });
      reported = new Set(current.keys());
    } catch (err) {
      beats = 0; // the stored list may now be off: rewrite it whole next time
      throw err;
    }
    const { dead } = await registry.list(Date.now());
    for (const n of dead) {
      if (n.node_id === config.nodeId || !(await registry.claimReap(n.node_id))) continue;
      const sessionIds = await registry.sessionsOf(n.node_id);
      const gone = await presence.reapNode(n.node_id, sessionIds, Date.now());
      for (const g of gone) await publish(g.sessionId, BusKind.DEVICE_LEFT, { device_id: g.deviceId, reason: 'timeout' });
      await registry.forget(n.node_id);
      log.warn({ dead_node: n.node_id, devices_offline: gone.length }, 'reaped a dead node');
    }
  };
  let beating = false;
  const beatTimer = setInterval(() => {
    if (beating || state.draining) return;
    beating = true;
    heartbeat().catch((err) => log.warn({ err: (err as Error).message }, 'heartbeat failed')).finally(() => (beating = false));
  }, heartbeatMs);
  beatTimer.unref();
  const canaryTimer = setInterval(() => {
    const now = Date.now();
    if (canary.sentAt <= canary.heardAt) canary.sentAt = now; // measure silence from the first unanswered send
    bus.publish(canaryId, encodeControlFrame({ kind: BusKind.CANARY, sessionId: canaryId, originNode: config.nodeId, body: { sent_at: now } }))
      .catch(() => undefined); // a failed publish is the store being down, which /ready reports on its own
  }, canaryEveryMs);
  canaryTimer.unref();
  let checking = false;
  const versionTimer = setInterval(() => {
    if (checking || state.draining) return;
    checking = true;
    hub.checkVersions(Math.max(1000, config.consistencyCheckMs))
      .then((healed) => (healed > 0 ? log.warn({ sockets: healed }, 'version check healed sockets that missed updates') : undefined))
      .catch((err) => log.warn({ err: (err as Error).message }, 'version check failed'))
      .finally(() => (checking = false));
  }, config.consistencyCheckMs);
  versionTimer.unref();
  const adminTimer = setInterval(() => {
    if (app.numSubscribers('admins/j') + app.numSubscribers('admins/p') === 0) return;
    adminMetrics.all().then(
      (payload) => deliverControl({ kind: BusKind.BROADCAST, sessionId: '', originNode: config.nodeId, body: { admin_update: true, payload } }, hub, app, metrics),
      (err) => log.warn({ err: (err as Error).message }, 'admin update failed'),
    );
  }, 4000);
  adminTimer.unref();

  let listenSocket: us_listen_socket | null = null;
  const node: GatewayNode = {
    config, app, store, bus, presence, hub, ws, tokens, log, metrics, port: 0,
    listen: () =>
      new Promise((resolve, reject) => {
        app.listen(config.host, config.port, (sock) => {
          if (!sock) return reject(new Error(`cannot listen on ${config.host}:${config.port}`));
          listenSocket = sock;
          node.port = uws.us_socket_local_port(sock as unknown as Parameters<typeof uws.us_socket_local_port>[0]);
          log.info({ host: config.host, port: node.port, store: store.kind }, 'gateway listening');
          heartbeat().catch((err) => log.warn({ err: (err as Error).message }, 'first heartbeat failed'));
          resolve(node.port);
        });
      }),
    shutdown: async () => {
      if (state.draining) return;
      state.draining = true;
      clearInterval(beatTimer);
      clearInterval(adminTimer);
      clearInterval(canaryTimer);
      clearInterval(versionTimer);
      if (listenSocket) uws.us_listen_socket_close(listenSocket);
      listenSocket = null;
      await ws.drain(Math.min(config.drainTimeoutMs, 3000));
      const deadline = Date.now() + config.drainTimeoutMs;
      while ((inflight.count > 0 || ws.connectionCount > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      ws.stop();
      // Leave the registry cleanly so nobody has to reap us.
      await registry.forget(config.nodeId).catch(() => undefined);
      await bus.close();
      await store.close();
      for (const c of redisClients) c.disconnect();
      log.info('gateway stopped');
    },
  };
  return node;
}
