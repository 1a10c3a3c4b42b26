import { BusKind, type ControlFrame, type DeviceInfo, type DeviceLeftReason } from '@harmonyflow/protocol';
import { canAccess, type Principal } from '../auth/tokens';
import type { Hub } from '../hub';
import type { Logger } from '../log';
import { every, type Periodic } from '../periodic';
import type { Connected, DeviceDescriptor, PresenceRegistry } from '../presence/types';
import type { ClaimResult, SessionStore } from '../store/types';
import { connOf, type Conn, type WS } from './conn';

export type PublishControl = (sessionId: string, kind: ControlFrame['kind'], body: Record<string, unknown>) => Promise<void>;

/** How an AUTH's claim and count ended (PresenceTracker.claimAndJoin). */
export type Joined =
  | { readonly status: 'quota_exceeded' }
  /** The socket closed during the claim: nothing is left counted for it. */
  | { readonly status: 'closed' }
  /** The session is another user's: nothing was counted. */
  | { readonly status: 'forbidden' }
  | { readonly status: 'ok'; readonly claim: Extract<ClaimResult, { status: 'ok' }>; readonly connected: Connected };

/** Where AUTH's claims go (claimAndJoin), with what a count taken by the store needs. */
export interface Claims {
  readonly store: Pick<SessionStore, 'claim'>;
  readonly presenceTimeoutMs: number;
}

/**
 * The one owner of this node's presence counting. A connection is `counted` exactly while the
 * registry holds one count for it on this instance; DEVICE_JOINED goes out when a count brings a
 * device online, DEVICE_LEFT when one takes it offline. A count update that fails is not lost:
 * the device is marked and its count on this instance is set outright from the local sockets on
 * the next reconciliation (every `touchEveryMs`), announcing whatever that changes.
 */
export class PresenceTracker {
  /** Devices whose stored count on this instance may be off: sessionId → device ids. */
  private dirty = new Map<string, Set<string>>();
  /** The devices the reconciliation round in progress is setting. */
  private settling = new Map<string, Set<string>>();
  /** Count updates in flight per session: until one has landed, the stored count may be off. */
  private inFlight = new Map<string, number>();
  private round: Promise<void> | null = null;
  private ticker: Periodic | null = null;

  constructor(
    private readonly presence: PresenceRegistry,
    private readonly hub: Hub,
    private readonly instance: string,
    private readonly publish: PublishControl,
    private readonly log: Logger,
    private readonly claims: Claims | null = null,
  ) {}

  /** Starts the periodic `last_seen` touch and reconciliation. */
  start(touchEveryMs: number, sockets: () => Iterable<WS>): void {
    this.ticker = every(touchEveryMs, this.log, 'presence reconciliation', async () => {
      this.touch(sockets(), Date.now());
      await this.reconcile();
    });
  }

  /** Stops the periodic work; resolves once a round in progress has finished. */
  async stop(): Promise<void> {
    const t = this.ticker;
    this.ticker = null;
    await t?.stop();
  }

  /**
   * Counts a newly authenticated connection. Counted only once the registry says so: if the
   * socket closed meanwhile, the count is taken back at once. Returns whether the device came
   * online, the session's devices and, asked for, the session itself when the registry read it
   * in the same call (PresenceRegistry.connect).
   */
  async join(c: Conn, device: DeviceDescriptor, now: number, withSnapshot = false): Promise<Connected> {
    let joined: Connected;
    try {
      joined = await this.tracked(c.sessionId, this.presence.connect(c.sessionId, device, this.instance, now, withSnapshot));
    } catch (err) {
      // It may have been counted all the same (a reply lost, a timeout): the next reconciliation
      // sets the device's count here from the sockets actually counted.
      this.markDirty(c.sessionId, c.deviceId);
      throw err;
    }
    return this.counted(c, joined);
  }

  /** The registry counts `c` now; a socket that closed meanwhile is taken back at once. */
  private counted(c: Conn, joined: Connected): Connected {
    c.counted = true;
    if (c.closed) this.leave(c, 'disconnected');
    return joined;
  }

  /**
   * AUTH: claims the connection's session (`c.sessionId`) for `who` and, when they may join,
   * counts the connection. One store call where the store holds the registry too (Redis: one
   * script, see SessionStore.claim's `count`), else the claim, then `join`. The session's bus
   * subscription must be live before: the snapshot read with the count must not miss a change.
   */
  async claimAndJoin(c: Conn, who: Principal, device: DeviceDescriptor, now: number, withSnapshot: boolean): Promise<Joined> {
    if (!this.claims) throw new Error('PresenceTracker made without a store to claim sessions in');
    const admin = who.role === 'admin';
    const count = { device, instance: this.instance, withSnapshot, timeoutMs: this.claims.presenceTimeoutMs };
    let claim: ClaimResult;
    try {
      claim = await this.tracked(c.sessionId, this.claims.store.claim(c.sessionId, who.userId, device.deviceId, admin, count));
    } catch (err) {
      // Counted or not, nobody knows (a reply lost, a timeout): the next reconciliation sets the
      // device's count here from the sockets actually counted.
      this.markDirty(c.sessionId, c.deviceId);
      throw err;
    }
    if (claim.status === 'quota_exceeded') return claim;
    if (!canAccess(who, claim.userId)) return { status: 'forbidden' };
    if (claim.connected) {
      this.counted(c, claim.connected);
      return c.closed ? { status: 'closed' } : { status: 'ok', claim, connected: claim.connected };
    }
    if (c.closed) return { status: 'closed' };
    const connected = await this.join(c, device, now, withSnapshot);
    return c.closed ? { status: 'closed' } : { status: 'ok', claim, connected };
  }

  /** Takes a connection's count back (closed, kicked, silent); announces when the device went offline. */
  leave(c: Conn, reason: DeviceLeftReason): void {
    if (!c.counted) return;
    c.counted = false;
    this.tracked(c.sessionId, this.presence.disconnect(c.sessionId, c.deviceId, this.instance, Date.now()))
      .then(({ last }) => (last ? this.left(c.sessionId, c.deviceId, reason) : undefined))
      .catch((err) => {
        this.log.warn({ err: (err as Error).message }, 'presence disconnect failed; will reconcile');
        this.markDirty(c.sessionId, c.deviceId);
      });
  }

  /** Traffic from a connection that went silent past the presence timeout: online again. */
  heard(c: Conn, now: number): void {
    if (!c.authed || c.counted || c.closed || c.authInFlight) return;
    c.counted = true;
    this.presence.connect(c.sessionId, { deviceId: c.deviceId }, this.instance, now)
      .then(({ first, devices }) => (first ? this.joined(c.sessionId, c.deviceId, devices) : undefined))
      .catch((err) => {
        this.log.warn({ err: (err as Error).message }, 'presence reconnect failed; will reconcile');
        this.markDirty(c.sessionId, c.deviceId);
      });
  }

  /** Refreshes `last_seen` of devices with traffic since the last touch, batched. */
  touch(sockets: Iterable<WS>, now: number): void {
    const entries: Array<{ sessionId: string; deviceId: string }> = [];
    for (const ws of sockets) {
      const c = connOf(ws);
      if (c.active && c.counted && !c.closed) entries.push({ sessionId: c.sessionId, deviceId: c.deviceId });
      c.active = false;
    }
    if (entries.length > 0) this.presence.touch(entries, now).catch((err) => this.log.warn({ err: (err as Error).message }, 'presence touch failed'));
  }

  /** Every device with a local connection in the session gets its count here set anew (its data was lost). */
  recountSession(sessionId: string): void {
    for (const c of this.hub.connsOf(sessionId) ?? []) {
      if (c.counted) this.markDirty(sessionId, c.deviceId);
    }
    this.reconcile().catch((err) => this.log.warn({ err: (err as Error).message }, 'presence recount failed'));
  }

  /**
   * After this instance was reaped while alive: every local count is set anew. Only connections
   * already counted: one whose join is still in flight registers itself when it lands.
   */
  async recountAll(): Promise<void> {
    for (const id of this.hub.localSessionIds()) {
      for (const c of this.hub.connsOf(id) ?? []) if (c.counted && !c.closed) this.markDirty(id, c.deviceId);
    }
    await this.reconcile();
  }

  private markDirty(sessionId: string, deviceId: string): void {
    let s = this.dirty.get(sessionId);
    if (!s) this.dirty.set(sessionId, (s = new Set()));
    s.add(deviceId);
  }

  /**
   * Sets the stored count of every marked device to what this node really holds. A call while a
   * round runs waits for it and then runs its own: it settles every device marked before the call.
   */
  async reconcile(): Promise<void> {
    while (this.round) await this.round.catch(() => undefined);
    if (this.dirty.size === 0) return;
    const round = (this.round = this.settle());
    try {
      await round;
    } finally {
      if (this.round === round) this.round = null;
    }
  }

  private async settle(): Promise<void> {
    // Devices stay unsettled (dirtySessionIds) until their count is set: `settling` covers the round.
    this.settling = this.dirty;
    this.dirty = new Map();
    let failure: unknown = null;
    try {
      for (const [sessionId, devices] of this.settling) {
        for (const deviceId of devices) {
          try {
            const change = await this.presence.setCount(sessionId, deviceId, this.instance, this.localCount(sessionId, deviceId), Date.now());
            if (change === 1) await this.joined(sessionId, deviceId);
            else if (change === -1) await this.left(sessionId, deviceId, 'disconnected');
          } catch (err) {
            // Kept for the next round, like every other device that fails in this one.
            this.markDirty(sessionId, deviceId);
            failure ??= err;
          }
        }
      }
    } finally {
      this.settling = new Map();
    }
    if (failure) throw failure;
  }

  /** Sessions with a count on this instance that may be off. */
  dirtySessionIds(): string[] {
    return [...new Set([...this.dirty.keys(), ...this.settling.keys(), ...this.inFlight.keys()])];
  }

  /**
   * A count update, with its session unsettled until it has landed: a session left meanwhile
   * must stay in the registry set, or an update that then fails would leave a count no reaper finds.
   */
  private tracked<T>(sessionId: string, update: Promise<T>): Promise<T> {
    this.inFlight.set(sessionId, (this.inFlight.get(sessionId) ?? 0) + 1);
    return update.finally(() => {
      const n = this.inFlight.get(sessionId)! - 1;
      if (n > 0) this.inFlight.set(sessionId, n);
      else this.inFlight.delete(sessionId);
    });
  }

  private localCount(sessionId: string, deviceId: string): number {
    let n = 0;
    for (const c of this.hub.connsOf(sessionId) ?? []) {
      if (c.counted && !c.closed && c.deviceId === deviceId) n++;
    }
    return n;
  }

  /**
   * DEVICE_JOINED with the device's stored record (read now, unless the caller has it), to the
   * session's other devices on every node. Not published when the session has no other device:
   * only a socket of another device hears it, every such socket's device has a record (made by
   * its count, kept while the session lives, removed only with a kick that closes its sockets),
   * and one whose count lands after this one finds this device in its own AUTH_SUCCESS list.
   * Half the announcements of a session's first connections, a command and a bus frame each.
   */
  async joined(sessionId: string, deviceId: string, known?: DeviceInfo[]): Promise<void> {
    const devices = known ?? (await this.presence.list(sessionId, Date.now()));
    const device = devices.find((d) => d.device_id === deviceId);
    if (device && devices.length > 1) await this.publish(sessionId, BusKind.DEVICE_JOINED, { device });
  }

  left(sessionId: string, deviceId: string, reason: DeviceLeftReason): Promise<void> {
    return this.publish(sessionId, BusKind.DEVICE_LEFT, { device_id: deviceId, reason });
  }
}
