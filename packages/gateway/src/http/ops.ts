import type { TemplatedApp } from 'uWebSockets.js';
import { ErrorCode } from '@harmonyflow/protocol';
import { AppError } from '../errors';
import type { Metrics } from '../metrics';
import { route, type HttpDeps } from './uws';

export interface OpsState {
  readonly nodeId: string;
  readonly version: string;
  readonly startedAt: number;
  readonly ttlSeconds: number;
  readonly storeKind: 'memory' | 'redis';
  readonly metricsToken: string | null;
  /** Why the node is not ready, or null when it is. */
  notReadyReason(): Promise<string | null>;
  redisStatus(): Promise<'up' | 'down' | 'embedded'>;
  activeConnections(): number;
}

function uptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m${s % 60}s`;
}

/** GET /health, /ready and /metrics: no auth (metrics optionally behind METRICS_TOKEN). */
export function registerOpsRoutes(app: TemplatedApp, deps: HttpDeps, ops: OpsState, metrics: Metrics): void {
  route(app, deps, 'get', '/health', { name: '/health', auth: 'none' }, async () => {
    const redis = await ops.redisStatus();
    return {
      status: 200,
      body: {
        status: redis === 'down' ? 'degraded' : 'healthy',
        timestamp: new Date().toISOString(),
        version: ops.version,
        uptime: uptime(Date.now() - ops.startedAt),
        active_connections: ops.activeConnections(),
        node_id: ops.nodeId,
        redis,
        store: ops.storeKind,
        metrics: {
          snapshot_ttl_hours: ops.ttlSeconds / 3600,
          multi_device_enabled: true,
          versioning_enabled: true,
        },
      },
    };
  });

  route(app, deps, 'get', '/ready', { name: '/ready', auth: 'none' }, async () => {
    const reason = await ops.notReadyReason();
    if (reason) return { status: 503, body: { ready: false, node_id: ops.nodeId, reason } };
    return { status: 200, body: { ready: true, node_id: ops.nodeId } };
  });

  route(app, deps, 'get', '/metrics', { name: '/metrics', auth: 'none' }, async (ctx) => {
    if (ops.metricsToken && ctx.headers.authorization !== `Bearer ${ops.metricsToken}`) {
      throw new AppError(ErrorCode.UNAUTHORIZED, 401, 'metrics token required');
    }
    return { status: 200, contentType: metrics.registry.contentType, body: await metrics.registry.metrics() };
  });
}
