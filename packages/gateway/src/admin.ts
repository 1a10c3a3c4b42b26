import type { LocalConnection, NodeInfo, NodeRegistry } from './cluster/nodeRegistry';
import type { SessionStore } from './store/types';

/** This node's own part, read live (the registry holds other nodes' as of their last heartbeat). */
export interface LocalFigures {
  readonly instance: string;
  /** This incarnation's NodeInfo with live figures. */
  self(): NodeInfo;
  /**
   * This node's authenticated connections with a local id above `after`, in id order (`seq` is
   * the local id), made as they are iterated: a page costs records for the page only.
   */
  connectionsAfter(after: number): Iterable<{ seq: number; conn: LocalConnection }>;
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
    const mine = this.local.self();
    return [mine, ...live.filter((n) => n.instance !== mine.instance)].sort((a, b) => (a.instance < b.instance ? -1 : a.instance > b.instance ? 1 : 0));
  }

  async connections() {
    return connectionFigures(await this.nodes());
  }

  async sessions() {
    const [nodes, stored] = await Promise.all([this.nodes(), this.store.countSessions()]);
    return sessionFigures(nodes, stored);
  }

  async snapshots() {
    const c = await this.store.counters();
    return { writes_total: c.writes, reads_total: c.reads };
  }

  async all() {
    const [nodes, stored, snapshots] = await Promise.all([this.nodes(), this.store.countSessions(), this.snapshots()]);
    return { sessions: sessionFigures(nodes, stored), connections: connectionFigures(nodes), snapshots, nodes, timestamp: new Date().toISOString() };
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
        for (const { seq, conn } of this.local.connectionsAfter(after)) {
          if (items.length === limit) return { items, next_cursor: encodeCursor(inst, String(last)) };
          items.push(conn);
          last = seq;
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

function connectionFigures(nodes: NodeInfo[]) {
  return {
    active_connections: nodes.reduce((n, x) => n + x.active_connections, 0),
    nodes: nodes.map((x) => ({
      node_id: x.node_id, instance: x.instance, active_connections: x.active_connections, sessions: x.sessions,
      started_at: x.started_at, last_heartbeat: new Date(x.updated_at).toISOString(),
    })),
    node_count: nodes.length,
  };
}

function sessionFigures(nodes: NodeInfo[], stored: number) {
  return { active_sessions: nodes.reduce((n, x) => n + x.sessions, 0), stored_sessions: stored };
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
