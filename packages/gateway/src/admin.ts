import type { LocalConnection, NodeInfo, NodeRegistry } from './cluster/nodeRegistry';
import type { SessionStore } from './store/types';

/** This node's own figures, read live (the registry holds other nodes' as of their last heartbeat). */
export interface LocalFigures {
  readonly instance: string;
  connections(): number;
  sessions(): number;
  localConnections(): Map<string, LocalConnection>;
}

/**
 * Cluster-wide figures for /admin/metrics/* and ADMIN_UPDATE (SPEC §9): every live node's, from
 * the registry, with the answering node's own part live rather than one heartbeat old.
 */
export class AdminMetrics {
  constructor(private readonly store: SessionStore, private readonly registry: NodeRegistry, private readonly local: LocalFigures) {}

  /** Live node incarnations, this one with live figures (and listed even before its first beat lands). */
  async nodes(): Promise<NodeInfo[]> {
    const { live } = await this.registry.list(Date.now());
    const others = live.filter((n) => n.instance !== this.local.instance);
    const self = live.find((n) => n.instance === this.local.instance);
    const mine: NodeInfo = {
      ...(self ?? { node_id: this.local.instance.slice(0, this.local.instance.lastIndexOf('/')), instance: this.local.instance, started_at: new Date().toISOString() }),
      active_connections: this.local.connections(), sessions: this.local.sessions(), updated_at: Date.now(),
    } as NodeInfo;
    return [mine, ...others].sort((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0));
  }

  async connections() {
    const nodes = await this.nodes();
    return {
      active_connections: nodes.reduce((n, x) => n + x.active_connections, 0),
      nodes: nodes.map((x) => ({
        node_id: x.node_id, instance: x.instance, active_connections: x.active_connections, sessions: x.sessions,
        started_at: x.started_at, last_heartbeat: new Date(x.updated_at).toISOString(),
      })),
      node_count: nodes.length,
    };
  }

  async sessions() {
    const nodes = await this.nodes();
    return {
      active_sessions: nodes.reduce((n, x) => n + x.sessions, 0),
      stored_sessions: await this.store.countSessions(),
    };
  }

  async snapshots() {
    const c = await this.store.counters();
    return { writes_total: c.writes, reads_total: c.reads };
  }

  async all() {
    const [sessions, connections, snapshots, nodes] = await Promise.all([this.sessions(), this.connections(), this.snapshots(), this.nodes()]);
    return { sessions, connections, snapshots, nodes, timestamp: new Date().toISOString() };
  }

  /**
   * One page of every node's connections: nodes in instance order, this node's own list live,
   * the others' from the registry, O(limit) per page on the registry side.
   */
  async connectionPage(limit: number, cursor: string | null): Promise<{ items: LocalConnection[]; next_cursor: string | null }> {
    const instances = (await this.nodes()).map((n) => n.instance);
    let pos = decodeCursor(cursor);
    const items: LocalConnection[] = [];
    let i = pos ? instances.findIndex((x) => x >= pos!.instance) : 0;
    if (i < 0) return { items, next_cursor: null };
    if (pos && instances[i] !== pos.instance) pos = null; // that node is gone: start the next one
    for (; i < instances.length && items.length < limit; i++, pos = null) {
      const inst = instances[i];
      const inner = pos?.inner ?? '0';
      if (inst === this.local.instance) {
        // Local ids grow with connection order: resume after the last one listed.
        const after = Number(inner) || 0;
        let last = after;
        for (const c of this.local.localConnections().values()) {
          const n = Number(c.conn_id.slice(c.conn_id.lastIndexOf('/') + 1));
          if (n <= after) continue;
          if (items.length === limit) return { items, next_cursor: encodeCursor(inst, String(last)) };
          items.push(c);
          last = n;
        }
        continue;
      }
      // The registry pages by scan cursor, and a scan may return more than asked: the cursor also
      // says how many of that batch were listed already.
      let [scan, skipText] = inner.split(':');
      let skip = Number(skipText) || 0;
      for (;;) {
        const page = await this.registry.connectionsOf(inst, scan || '0', limit - items.length);
        const batch = page.items.slice(skip);
        const room = limit - items.length;
        if (batch.length > room) {
          items.push(...batch.slice(0, room));
          return { items, next_cursor: encodeCursor(inst, `${scan}:${skip + room}`) };
        }
        items.push(...batch);
        skip = 0;
        if (page.next === null) break;
        scan = page.next;
        if (items.length >= limit) return { items, next_cursor: encodeCursor(inst, `${scan}:0`) };
      }
    }
    return { items, next_cursor: i < instances.length ? encodeCursor(instances[i], '0') : null };
  }
}

function encodeCursor(instance: string, inner: string): string {
  return Buffer.from(JSON.stringify([instance, inner])).toString('base64url');
}

function decodeCursor(cursor: string | null): { instance: string; inner: string } | null {
  if (!cursor) return null;
  try {
    const [instance, inner] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [unknown, unknown];
    if (typeof instance === 'string' && typeof inner === 'string') return { instance, inner };
  } catch {
    // fall through: an unreadable cursor starts over
  }
  return null;
}
