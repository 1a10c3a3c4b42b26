import type { NodeRegistry } from './cluster/nodeRegistry';
import type { SessionStore } from './store/types';

/** Cluster-wide figures for /admin/metrics/* and ADMIN_UPDATE: every node's, aggregated via the registry. */
export class AdminMetrics {
  constructor(private readonly store: SessionStore, private readonly registry: NodeRegistry) {}

  async connections() {
    const { live } = await this.registry.list(Date.now());
    return {
      active_connections: live.reduce((n, x) => n + x.active_connections, 0),
      nodes: live.map((x) => ({ node_id: x.node_id, active_connections: x.active_connections, sessions: x.sessions, started_at: x.started_at, last_heartbeat: new Date(x.updated_at).toISOString() })),
      node_count: live.length,
    };
  }

  async sessions() {
    const { live } = await this.registry.list(Date.now());
    return {
      active_sessions: live.reduce((n, x) => n + x.sessions, 0),
      stored_sessions: await this.store.countSessions(),
    };
  }

  async snapshots() {
    const c = await this.store.counters();
    return { writes_total: c.writes, reads_total: c.reads };
  }

  async all() {
    const [sessions, connections, snapshots, list] = await Promise.all([this.sessions(), this.connections(), this.snapshots(), this.registry.list(Date.now())]);
    return { sessions, connections, snapshots, nodes: list.live, timestamp: new Date().toISOString() };
  }
}
