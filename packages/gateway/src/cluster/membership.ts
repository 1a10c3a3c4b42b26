import type { Logger } from '../log';
import { every, type Periodic } from '../periodic';
import type { PresenceRegistry } from '../presence/types';
import { nodeIdOf } from './instance';
import type { HeartbeatResult, LocalConnection, NodeInfo, NodeRegistry } from './nodeRegistry';

/** What membership needs to know about this node's own sockets and sessions. */
export interface LocalView {
  /** Sessions with a local socket now. */
  sessionIds(): string[];
  /** Sessions this node stopped hosting since the last call (joins are recorded as they happen). */
  drainLeftSessions(): string[];
  /** Whether the session has a local socket now. */
  hosts(sessionId: string): boolean;
  /** Sessions with a device count on this instance that may be off (an update in flight, or failed and not yet reconciled). */
  unsettledSessionIds(): readonly string[];
  /** Authenticated local connections (for the periodic full rewrite). */
  connections(): Iterable<LocalConnection>;
  /** The figures of NodeInfo this node reports. */
  figures(): { active_connections: number; sessions: number; [extra: string]: unknown };
}

export interface MembershipOptions {
  readonly instance: string;
  readonly startedAt: number;
  readonly heartbeatMs: number;
}

/**
 * The connection list is sent as a delta each beat and whole every this many beats (and after a
 * failed beat or a re-registration), so a list gone off somehow heals within a minute at most.
 */
const REWRITE_EVERY = 12;

export interface MembershipHooks {
  /** A reaped instance's device went offline: tell the session's other devices (DEVICE_LEFT timeout). */
  deviceTimedOut(sessionId: string, deviceId: string): Promise<void>;
  /** This instance was declared dead while alive (a long pause): count its devices back in. */
  recount(): Promise<void>;
}

/**
 * Cluster membership of one node incarnation: heartbeats into the registry, reaping of dead
 * instances (their devices go offline and the others hear DEVICE_LEFT `timeout`, with no help from
 * the dead node), takeover of previous incarnations of the same NODE_ID at start, and a clean
 * leave on shutdown. Nothing depends on a node saying goodbye.
 */
export class Membership {
  private beats = 0;
  /** The first heartbeat landed (an entry missing after it means we were reaped). */
  private registered = false;
  /** Connection list changes since the last beat (kept as they happen: no per-beat diff of every connection). */
  private added = new Map<string, LocalConnection>();
  private removed = new Set<string>();
  /** Sessions left here whose device counts are not settled yet: they stay in the registry's set. */
  private heldBack = new Set<string>();
  private ticker: Periodic | null = null;

  constructor(
    private readonly registry: NodeRegistry,
    private readonly presence: PresenceRegistry,
    private readonly local: LocalView,
    private readonly hooks: MembershipHooks,
    private readonly log: Logger,
    private readonly opts: MembershipOptions,
  ) {}

  /**
   * Registers this incarnation and reaps every earlier incarnation of the same NODE_ID at once
   * (its devices are offline unless they are back), before this node accepts a connection.
   */
  async start(): Promise<void> {
    await this.beat();
    const { live, dead } = await this.registry.list(Date.now());
    const mine = nodeIdOf(this.opts.instance);
    for (const n of [...live, ...dead]) {
      if (n.instance !== this.opts.instance && nodeIdOf(n.instance) === mine) await this.reap(n.instance, 'previous incarnation');
    }
    this.ticker = every(this.opts.heartbeatMs, this.log, 'heartbeat', async () => {
      await this.beat();
      await this.reapDead();
    });
  }

  /**
   * One heartbeat: session set and connection list deltas, info; and if a reaper took this
   * instance for dead meanwhile (its entry was gone, or the reap mark says so), everything it
   * holds is registered and counted again.
   */
  async beat(): Promise<void> {
    const inst = this.opts.instance;
    const left = this.settledLeftSessions();
    if (left.length) await this.registry.trackSessions(inst, [], left);
    const full = this.beats++ % REWRITE_EVERY === 0;
    const added = full ? [...this.local.connections()] : [...this.added.values()];
    const removed = full ? [] : [...this.removed];
    this.added = new Map();
    this.removed = new Set();
    const info = this.selfInfo();
    let seen: HeartbeatResult;
    try {
      seen = await this.registry.heartbeat(info, { full, added, removed });
    } catch (err) {
      this.beats = 0; // the stored list may now be off: rewrite it whole next time
      throw err;
    }
    if ((seen.missing || seen.reaped) && this.registered) await this.reregister();
    this.registered = true;
  }

  /** This incarnation's NodeInfo with its figures as of now. */
  selfInfo(): NodeInfo {
    const inst = this.opts.instance;
    return {
      node_id: nodeIdOf(inst), instance: inst, ...this.local.figures(),
      started_at: new Date(this.opts.startedAt).toISOString(), updated_at: Date.now(),
    };
  }

  /** A local connection authenticated: listed from the next heartbeat on. */
  connectionUp(c: LocalConnection): void {
    this.added.set(c.conn_id, c);
    this.removed.delete(c.conn_id);
  }

  /** A local connection closed. */
  connectionDown(connId: string): void {
    if (!this.added.delete(connId)) this.removed.add(connId);
  }

  /**
   * Sessions to drop from the registry's set: left here, and every device count of theirs on this
   * instance settled. One with a count still off (a disconnect that failed and is not reconciled
   * yet) stays listed, so that if this process dies first, its reaper still zeroes that count.
   */
  private settledLeftSessions(): string[] {
    const candidates = new Set([...this.heldBack, ...this.local.drainLeftSessions()]);
    this.heldBack.clear();
    const unsettled = new Set(this.local.unsettledSessionIds());
    const settled: string[] = [];
    for (const id of candidates) {
      if (this.local.hosts(id)) continue; // hosted again: listed, and drained when it is left again
      if (unsettled.has(id)) this.heldBack.add(id);
      else settled.push(id);
    }
    return settled;
  }

  private async reregister(): Promise<void> {
    this.log.warn('this node was reaped while alive; re-registering its sessions and devices');
    await this.registry.trackSessions(this.opts.instance, this.local.sessionIds(), []);
    this.beats = 0; // forget() dropped our connection list too
    await this.hooks.recount();
  }

  private async reapDead(): Promise<void> {
    const { dead } = await this.registry.list(Date.now());
    for (const n of dead) if (n.instance !== this.opts.instance) await this.reap(n.instance, 'dead');
  }

  private async reap(instance: string, why: string): Promise<void> {
    if (!(await this.registry.claimReap(instance))) return;
    const sessionIds = await this.registry.sessionsOf(instance);
    const gone = await this.presence.reapNode(instance, sessionIds, Date.now());
    for (const g of gone) await this.hooks.deviceTimedOut(g.sessionId, g.deviceId);
    await this.registry.forget(instance);
    this.log.warn({ reaped: instance, why, devices_offline: gone.length }, 'reaped a node incarnation');
  }

  /**
   * Leaves cleanly once every local socket is closed: zeroes whatever this instance still counts
   * (a disconnect that failed during the drain) in the sessions of its registry set, its local
   * ones and the unsettled ones (with a count that may be off), and drops its registry entries. If
   * Redis is unreachable the entries stay, and a survivor reaps them once our heartbeat is old.
   */
  async leave(): Promise<Array<{ sessionId: string; deviceId: string }>> {
    // A beat still in flight would put the entry back after forget(): a departed instance listed
    // as live until it is reaped.
    await this.stop();
    const inst = this.opts.instance;
    const sessionIds = [...new Set([...(await this.registry.sessionsOf(inst)), ...this.local.sessionIds(), ...this.heldBack, ...this.local.unsettledSessionIds()])];
    const gone = await this.presence.reapNode(inst, sessionIds, Date.now());
    await this.registry.forget(inst);
    return gone;
  }

  /** Stops heartbeating; resolves once a beat in flight has landed. */
  async stop(): Promise<void> {
    const t = this.ticker;
    this.ticker = null;
    await t?.stop();
  }
}
