import type { KeySpace } from '../store/keys';
import type { RedisLike } from '../store/redisClient';

/** What a node incarnation reports about itself on every heartbeat. */
export interface NodeInfo {
  node_id: string;
  /** The incarnation: `<node_id>/<random>`, new for every process start. */
  instance: string;
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

export interface HeartbeatResult {
  readonly missing: boolean;
  readonly reaped: boolean;
}

/**
 * Which gateway node incarnations are alive and what they host. Instances heartbeat; one silent
 * for `deadAfterMs` is dead, and exactly one survivor (`claimReap`) cleans up after it. Every key
 * is per instance, so a process restarted under the same NODE_ID starts from nothing of its own.
 */
export interface NodeRegistry {
  /**
   * Instance info, plus the connection list as a delta since the last beat (or whole, with
   * `full`). `missing`: the instance had no entry before this beat (the first beat, or a reaper
   * forgot it while it was alive: a long pause, a partition). `reaped`: a reaper claimed it since
   * the last beat (reported once). Either way, after the first beat, what the instance holds must
   * be registered and counted again.
   */
  heartbeat(info: NodeInfo, connections: ConnectionDelta): Promise<HeartbeatResult>;
  /** Live instances, and dead ones not yet reaped. */
  list(now: number): Promise<{ live: NodeInfo[]; dead: NodeInfo[] }>;
  /**
   * One page of an instance's connection list (as of its last heartbeat). `cursor` is opaque
   * ('0' to start); `next` is null at the end. Connections present throughout a walk are listed
   * at least once.
   */
  connectionsOf(instance: string, cursor: string, count: number): Promise<{ items: LocalConnection[]; next: string | null }>;
  /** Sessions the instance hosted (for reaping its devices). */
  sessionsOf(instance: string): Promise<string[]>;
  trackSessions(instance: string, added: readonly string[], removed: readonly string[]): Promise<void>;
  /** True for exactly one caller per dead instance among the processes sharing the registry. */
  claimReap(instance: string): Promise<boolean>;
  forget(instance: string): Promise<void>;
}

/**
 * One process holds the whole registry, so no other process can reap one of its instances:
 * `claimReap` is true while the instance is registered (there is no second reaper to race) and a
 * heartbeat never reports `reaped`.
 */
export class MemoryNodeRegistry implements NodeRegistry {
  private readonly nodes = new Map<string, NodeInfo>();
  /** Per instance, in insertion order, which is `seq` order: the paging cursor is a `seq`. */
  private readonly conns = new Map<string, Map<string, { seq: number; conn: LocalConnection }>>();
  private readonly sessions = new Map<string, Set<string>>();
  private seq = 0;

  constructor(private readonly deadAfterMs: number) {}

  async heartbeat(info: NodeInfo, delta: ConnectionDelta): Promise<HeartbeatResult> {
    const missing = !this.nodes.has(info.instance);
    this.nodes.set(info.instance, info);
    let m = this.conns.get(info.instance);
    if (!m || delta.full) this.conns.set(info.instance, (m = new Map()));
    for (const c of delta.added) {
      m.delete(c.conn_id); // re-added: to the end, with a new seq
      m.set(c.conn_id, { seq: ++this.seq, conn: c });
    }
    for (const id of delta.removed) m.delete(id);
    return { missing, reaped: false };
  }

  async list(now: number): Promise<{ live: NodeInfo[]; dead: NodeInfo[] }> {
    return splitByLiveness([...this.nodes.values()], now, this.deadAfterMs);
  }

  /** The cursor is the seq of the last item returned, so a removal never shifts the rest of a walk. */
  async connectionsOf(instance: string, cursor: string, count: number): Promise<{ items: LocalConnection[]; next: string | null }> {
    const after = Number(cursor) || 0;
    const items: LocalConnection[] = [];
    let last = after;
    for (const e of this.conns.get(instance)?.values() ?? []) {
      if (e.seq <= after) continue;
      if (items.length === count) return { items, next: String(last) };
      items.push(e.conn);
      last = e.seq;
    }
    return { items, next: null };
  }

  async sessionsOf(instance: string): Promise<string[]> {
    return [...(this.sessions.get(instance) ?? [])];
  }

  async trackSessions(instance: string, added: readonly string[], removed: readonly string[]): Promise<void> {
    let s = this.sessions.get(instance);
    if (!s) this.sessions.set(instance, (s = new Set()));
    for (const id of added) s.add(id);
    for (const id of removed) s.delete(id);
  }

  async claimReap(instance: string): Promise<boolean> {
    return this.nodes.has(instance);
  }

  async forget(instance: string): Promise<void> {
    this.nodes.delete(instance);
    this.conns.delete(instance);
    this.sessions.delete(instance);
  }
}

/**
 * Redis layout (KeySpace): `nodes` hash instance → NodeInfo JSON; per instance a `sessions` set
 * and a `conns` hash (updated by delta each heartbeat, rewritten whole now and then). Every beat
 * refreshes the instance keys' TTLs: the connection list vanishes soon after its node dies, the
 * session set outlives any session it names (a reaper needs it).
 */
export class RedisNodeRegistry implements NodeRegistry {
  constructor(
    private readonly r: RedisLike,
    private readonly keys: KeySpace,
    private readonly deadAfterMs: number,
    private readonly sessionTtlMs: number,
  ) {}

  async heartbeat(info: NodeInfo, delta: ConnectionDelta): Promise<HeartbeatResult> {
    // `nodes` and an instance's own keys sit in different Cluster slots: two transactions, not one.
    const connsKey = this.keys.nodeConns(info.instance);
    const reapingKey = this.keys.nodeReaping(info.instance);
    const added = await this.r.hset(this.keys.nodes(), info.instance, JSON.stringify(info));
    // The reap mark is read and consumed with the instance's own keys (one {instance} slot).
    const m = this.r.multi().get(reapingKey).del(reapingKey);
    if (delta.full) m.del(connsKey);
    if (delta.added.length > 0) {
      const flat: string[] = [];
      for (const c of delta.added) flat.push(c.conn_id, packConnection(c));
      m.hset(connsKey, ...flat);
    }
    if (delta.removed.length > 0) m.hdel(connsKey, ...delta.removed);
    m.pexpire(connsKey, this.deadAfterMs * 2);
    m.pexpire(this.keys.nodeSessions(info.instance), this.sessionTtlMs);
    const replies = await m.exec();
    const [err, mark] = replies?.[0] ?? [new Error('heartbeat transaction discarded'), null];
    if (err) throw err;
    return { missing: added === 1, reaped: mark !== null };
  }

  async list(now: number): Promise<{ live: NodeInfo[]; dead: NodeInfo[] }> {
    const all = Object.values(await this.r.hgetall(this.keys.nodes())).map((s) => JSON.parse(s) as NodeInfo);
    return splitByLiveness(all, now, this.deadAfterMs);
  }

  async connectionsOf(instance: string, cursor: string, count: number): Promise<{ items: LocalConnection[]; next: string | null }> {
    const [next, flat] = await this.r.hscan(this.keys.nodeConns(instance), cursor, 'COUNT', count);
    const items: LocalConnection[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) items.push(unpackConnection(flat[i], flat[i + 1]));
    return { items, next: next === '0' ? null : next };
  }

  async sessionsOf(instance: string): Promise<string[]> {
    return this.r.smembers(this.keys.nodeSessions(instance));
  }

  async trackSessions(instance: string, added: readonly string[], removed: readonly string[]): Promise<void> {
    const key = this.keys.nodeSessions(instance);
    const m = this.r.multi();
    if (added.length > 0) m.sadd(key, ...added);
    if (removed.length > 0) m.srem(key, ...removed);
    m.pexpire(key, this.sessionTtlMs);
    await m.exec();
  }

  async claimReap(instance: string): Promise<boolean> {
    return (await this.r.set(this.keys.nodeReaping(instance), String(Date.now()), 'PX', 60_000, 'NX')) === 'OK';
  }

  async forget(instance: string): Promise<void> {
    await this.r.hdel(this.keys.nodes(), instance);
    // One slot: both keys carry the {instance} hash tag.
    await this.r.del(this.keys.nodeSessions(instance), this.keys.nodeConns(instance));
  }
}

/**
 * A connection as stored in its instance's hash (field = conn id): a positional JSON array, about
 * half the bytes of the object, for every connection of every node.
 */
function packConnection(c: LocalConnection): string {
  return JSON.stringify([c.node_id, c.session_id, c.user_id, c.device_id, c.subprotocol === 'harmonyflow.v1.proto' ? 1 : 0, Date.parse(c.connected_at)]);
}

function unpackConnection(connId: string, packed: string): LocalConnection {
  const [nodeId, sessionId, userId, deviceId, proto, at] = JSON.parse(packed) as [string, string, string, string, number, number];
  return {
    conn_id: connId, node_id: nodeId, session_id: sessionId, user_id: userId, device_id: deviceId,
    subprotocol: proto ? 'harmonyflow.v1.proto' : 'harmonyflow.v1.json', connected_at: new Date(at).toISOString(),
  };
}

function splitByLiveness(all: NodeInfo[], now: number, deadAfterMs: number): { live: NodeInfo[]; dead: NodeInfo[] } {
  const live: NodeInfo[] = [];
  const dead: NodeInfo[] = [];
  for (const n of all) (now - n.updated_at <= deadAfterMs ? live : dead).push(n);
  return { live, dead };
}
