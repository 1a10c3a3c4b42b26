import type { KeySpace } from '../store/keys';
import type { RedisLike } from '../store/redisClient';

/** What a node reports about itself on every heartbeat. */
export interface NodeInfo {
  node_id: string;
  active_connections: number;
  sessions: number;
  started_at: string;
  updated_at: number;
  [extra: string]: unknown;
}

export interface LocalConnection {
  conn_id: string;
  node_id: string;
  session_id: string;
  user_id: string;
  device_id: string;
  subprotocol: string;
  connected_at: string;
}

export interface ConnectionDelta {
  readonly full: boolean;
  readonly added: readonly LocalConnection[];
  readonly removed: readonly string[];
}

/**
 * Which gateway nodes are alive and what they host. Nodes heartbeat; one silent for `deadAfterMs`
 * is dead, and exactly one survivor (`claimReap`) cleans up after it.
 */
export interface NodeRegistry {
  /** Node info, plus the connection list as a delta since the last beat (or whole, with `full`). */
  heartbeat(info: NodeInfo, connections: ConnectionDelta): Promise<void>;
  /** Live nodes, and dead ones not yet reaped. */
  list(now: number): Promise<{ live: NodeInfo[]; dead: NodeInfo[] }>;
  connections(): Promise<LocalConnection[]>;
  /** Sessions the node hosted (for reaping its devices). */
  sessionsOf(nodeId: string): Promise<string[]>;
  trackSessions(nodeId: string, added: readonly string[], removed: readonly string[]): Promise<void>;
  /** True for exactly one caller per dead node. */
  claimReap(nodeId: string): Promise<boolean>;
  /**
   * When this node was reaped (declared dead) since it started, the reap time — consumed by the
   * call. A node paused past the dead-node timeout uses it to re-register what it still holds.
   */
  takeReapedMark(nodeId: string, startedAt: number): Promise<number | null>;
  forget(nodeId: string): Promise<void>;
}

export class MemoryNodeRegistry implements NodeRegistry {
  private readonly nodes = new Map<string, NodeInfo>();
  private readonly conns = new Map<string, Map<string, LocalConnection>>();
  private readonly sessions = new Map<string, Set<string>>();

  constructor(private readonly deadAfterMs: number) {}

  async heartbeat(info: NodeInfo, delta: ConnectionDelta): Promise<void> {
    this.nodes.set(info.node_id, info);
    let m = this.conns.get(info.node_id);
    if (!m || delta.full) this.conns.set(info.node_id, (m = new Map()));
    for (const c of delta.added) m.set(c.conn_id, c);
    for (const id of delta.removed) m.delete(id);
  }

  async list(now: number): Promise<{ live: NodeInfo[]; dead: NodeInfo[] }> {
    const all = [...this.nodes.values()];
    return { live: all.filter((n) => now - n.updated_at <= this.deadAfterMs), dead: all.filter((n) => now - n.updated_at > this.deadAfterMs) };
  }

  async connections(): Promise<LocalConnection[]> {
    return [...this.conns.values()].flatMap((m) => [...m.values()]);
  }

  async sessionsOf(nodeId: string): Promise<string[]> {
    return [...(this.sessions.get(nodeId) ?? [])];
  }

  async trackSessions(nodeId: string, added: readonly string[], removed: readonly string[]): Promise<void> {
    let s = this.sessions.get(nodeId);
    if (!s) this.sessions.set(nodeId, (s = new Set()));
    for (const id of added) s.add(id);
    for (const id of removed) s.delete(id);
  }

  async claimReap(nodeId: string): Promise<boolean> {
    return this.nodes.has(nodeId);
  }

  async takeReapedMark(): Promise<number | null> {
    return null; // one process: it cannot be declared dead by another
  }

  async forget(nodeId: string): Promise<void> {
    this.nodes.delete(nodeId);
    this.conns.delete(nodeId);
    this.sessions.delete(nodeId);
  }
}

/**
 * Redis layout: `nodes` hash node_id → NodeInfo JSON; `node:{id}:sessions` set; `node:{id}:conns`
 * hash of the node's connections (updated by delta each heartbeat, rewritten whole now and then,
 * expiring if the node dies).
 */
export class RedisNodeRegistry implements NodeRegistry {
  constructor(private readonly r: RedisLike, private readonly keys: KeySpace, private readonly deadAfterMs: number) {}

  async heartbeat(info: NodeInfo, delta: ConnectionDelta): Promise<void> {
    // `nodes` and a node's own keys sit in different Cluster slots: two transactions, not one.
    const connsKey = this.keys.node(info.node_id) + ':conns';
    await this.r.hset(this.keys.nodes(), info.node_id, JSON.stringify(info));
    const m = this.r.multi();
    if (delta.full) m.del(connsKey);
    if (delta.added.length > 0) {
      const flat: string[] = [];
      for (const c of delta.added) flat.push(c.conn_id, JSON.stringify(c));
      m.hset(connsKey, ...flat);
    }
    if (delta.removed.length > 0) m.hdel(connsKey, ...delta.removed);
    m.pexpire(connsKey, this.deadAfterMs * 2);
    await m.exec();
  }

  async list(now: number): Promise<{ live: NodeInfo[]; dead: NodeInfo[] }> {
    const all = Object.values(await this.r.hgetall(this.keys.nodes())).map((s) => JSON.parse(s) as NodeInfo);
    return { live: all.filter((n) => now - n.updated_at <= this.deadAfterMs), dead: all.filter((n) => now - n.updated_at > this.deadAfterMs) };
  }

  async connections(): Promise<LocalConnection[]> {
    const { live } = await this.list(Date.now());
    const out: LocalConnection[] = [];
    for (const n of live) {
      for (const raw of Object.values(await this.r.hgetall(this.keys.node(n.node_id) + ':conns'))) out.push(JSON.parse(raw));
    }
    return out;
  }

  async sessionsOf(nodeId: string): Promise<string[]> {
    return this.r.smembers(this.keys.node(nodeId) + ':sessions');
  }

  async trackSessions(nodeId: string, added: readonly string[], removed: readonly string[]): Promise<void> {
    const key = this.keys.node(nodeId) + ':sessions';
    const m = this.r.multi();
    if (added.length > 0) m.sadd(key, ...added);
    if (removed.length > 0) m.srem(key, ...removed);
    m.pexpire(key, 7 * 24 * 3600 * 1000); // outlives any session it names; gone if nobody is left to reap
    await m.exec();
  }

  async claimReap(nodeId: string): Promise<boolean> {
    return (await this.r.set(this.keys.node(nodeId) + ':reaping', String(Date.now()), 'PX', 60_000, 'NX')) === 'OK';
  }

  async takeReapedMark(nodeId: string, startedAt: number): Promise<number | null> {
    const key = this.keys.node(nodeId) + ':reaping';
    const at = Number(await this.r.get(key));
    if (!at || at < startedAt) return null;
    await this.r.del(key);
    return at;
  }

  async forget(nodeId: string): Promise<void> {
    await this.r.hdel(this.keys.nodes(), nodeId);
    await this.r.del(this.keys.node(nodeId) + ':sessions', this.keys.node(nodeId) + ':conns');
  }
}
