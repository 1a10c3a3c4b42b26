import {
  BusKind, CloseCode, MessageType, decodeBusFrame, type ControlFrame, type Envelope, type UpdateFrame,
} from '@harmonyflow/protocol';
import type { Bus } from './bus/types';
import { StoreUnavailableError } from './errors';
import type { Logger } from './log';
import type { Metrics } from './metrics';
import type { SessionHead, SessionStore, Snapshot } from './store/types';
import { connOf, type Conn, type WS } from './ws/conn';
import { EncodedUpdate, snapshotPayload, type EncodedFrame } from './ws/frames';
import { closeCounted, send, sendEnv } from './ws/io';

/** Store-unavailable retries of a resync (100 ms doubling to 1.6 s: about 5 s in all). */
const RESYNC_ATTEMPTS = 6;
/** Sessions per store read of the version check. */
const VERSION_CHECK_CHUNK = 500;

interface LocalSession {
  readonly id: string;
  /** Connections, not sockets: a delivery reads Conn fields without a call into uWS per socket. */
  readonly conns: Set<Conn>;
  /** When the last state frame for this session arrived over the bus. */
  lastFrameAt: number;
  /** The session's epoch as last seen here ('' until known). */
  epoch: string;
  /** Resolves once this node's bus subscription for the session is in place. */
  ready: Promise<void>;
}

export interface HubOptions {
  /** This process's incarnation id: how it recognises its own connections' writes. */
  readonly instance: string;
  /** Buffered bytes past which a socket stops receiving deltas (coalesced into a snapshot on drain). */
  readonly slowConsumerBytes: number;
  /**
   * Records that this node hosts the session before any of its devices is counted here, so a
   * survivor can find them if this node dies a moment later.
   */
  readonly trackSession: (sessionId: string) => Promise<void>;
}

/**
 * Local sockets per session and delivery of bus frames to them. Guarantees per connection:
 * within an epoch, state changes arrive in strictly increasing version order, each at most once;
 * a gap (lost bus frame, slow consumer) is healed from the update log or with a fresh snapshot,
 * never skipped. When the session's epoch changes (it was created again after expiring or being
 * lost), the socket gets one SNAPSHOT_RESPONSE of the new epoch and continues from there, even if
 * the new versions are lower than the ones it saw.
 */
export class Hub {
  private readonly sessions = new Map<string, LocalSession>();
  /** Sessions left since the registry last heard (joins are recorded at once, see HubOptions). */
  private sessionsLeft = new Set<string>();
  /** Control frames are routed to the node's handlers (kick, handoff, presence, broadcast). */
  onControl: (frame: ControlFrame) => void = () => {};
  /** The session was created anew under this node's sockets (its epoch changed). */
  onEpochChanged: (sessionId: string) => void = () => {};

  constructor(
    private readonly bus: Bus,
    private readonly store: SessionStore,
    private readonly metrics: Metrics,
    private readonly log: Logger,
    private readonly opts: HubOptions,
  ) {
    bus.onFrame((data) => this.onFrame(data));
    bus.onResubscribed(() => this.resyncAll('bus resubscribed'));
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  localSessionIds(): string[] {
    return [...this.sessions.keys()];
  }

  /** The session's connections on this node (`c.ws` is null once a socket closed). */
  connsOf(sessionId: string): ReadonlySet<Conn> | undefined {
    return this.sessions.get(sessionId)?.conns;
  }

  /** Sessions left since the last call (for the node registry). */
  drainLeftSessions(): string[] {
    const left = [...this.sessionsLeft];
    this.sessionsLeft = new Set();
    return left;
  }

  /**
   * Adds an authenticated socket to its session, holding back deltas (`pending`) until
   * `catchUp` has sent it a snapshot or replay. Resolves once the bus subscription is live, so a
   * snapshot read after this cannot miss a change.
   */
  async join(ws: WS): Promise<void> {
    const c = connOf(ws);
    c.pending = [];
    let s = this.sessions.get(c.sessionId);
    if (!s) {
      s = { id: c.sessionId, conns: new Set(), ready: this.attach(c.sessionId), lastFrameAt: Date.now(), epoch: '' };
      this.sessions.set(c.sessionId, s);
      this.sessionsLeft.delete(c.sessionId);
      this.metrics.localSessions.set(this.sessions.size);
      this.metrics.busSubscriptions.set(this.sessions.size);
    }
    s.conns.add(c);
    const ready = s.ready;
    try {
      await ready;
    } catch (err) {
      // Do not let one failed subscribe poison later joins of the same session.
      if (s.ready === ready) s.ready = this.attach(c.sessionId);
      s.ready.catch(() => undefined);
      throw err;
    }
  }

  /** Subscribes this node to the session's channel and records that it hosts the session. */
  private attach(sessionId: string): Promise<void> {
    return Promise.all([this.bus.subscribe([sessionId]), this.opts.trackSession(sessionId)]).then(() => undefined);
  }

  leave(ws: WS): void {
    const c = connOf(ws);
    const s = this.sessions.get(c.sessionId);
    if (!s || !s.conns.delete(c)) return;
    if (s.conns.size === 0) {
      this.sessions.delete(c.sessionId);
      this.sessionsLeft.add(c.sessionId);
      this.metrics.localSessions.set(this.sessions.size);
      this.metrics.busSubscriptions.set(this.sessions.size);
      this.bus.unsubscribe([c.sessionId]).catch((err) => this.log.warn({ err }, 'bus unsubscribe failed'));
    }
  }

  /**
   * Sends the socket what it missed since `afterVersion` of `afterEpoch` (replay from the update
   * log) or, when the log does not cover it, the epoch is another one or no version is given, one
   * SNAPSHOT_RESPONSE; then releases the deltas held back meanwhile. `before` runs synchronously
   * just before the first frame, with where the socket stands. A log with a hole (an entry that
   * does not decode, a version skipped) does not cover the gap: the socket gets a snapshot.
   * `known`: the session as read after this socket joined (null: none), when the caller has it; it
   * stands in for the snapshot read.
   */
  async catchUp(
    ws: WS, afterVersion: number | null, afterEpoch: string | null, before?: (at: CatchUpResult) => void, known?: Snapshot | null,
  ): Promise<CatchUpResult> {
    const c = connOf(ws);
    c.pending ??= [];
    const log = afterVersion !== null ? await this.store.updatesSince(c.sessionId, afterVersion, afterEpoch) : null;
    const replay = log !== null ? replayOf(log.frames, afterVersion!) : null;
    let snap: Snapshot | null = null;
    if (replay === null) snap = known !== undefined ? known : await this.store.get(c.sessionId);
    if (c.closed) return { resumed: false, version: 0, epoch: '' };
    const at: CatchUpResult = replay !== null
      ? { resumed: true, version: replay.length > 0 ? replay[replay.length - 1].version : afterVersion!, epoch: log!.epoch }
      : { resumed: false, version: snap ? snap.version : 0, epoch: snap ? snap.epoch : '' };
    // After awaits, outside any uWS callback: one cork makes the whole catch-up one write.
    ws.cork(() => this.sendCatchUp(ws, c, at, replay, snap, before));
    if (c.snapshotWanted && c.pending === null && !c.closed) {
      c.snapshotWanted = false;
      this.resync(ws, 'snapshot request', true);
    }
    return at;
  }

  private sendCatchUp(
    ws: WS, c: Conn, at: CatchUpResult, replay: UpdateFrame[] | null, snap: Snapshot | null, before?: (at: CatchUpResult) => void,
  ): void {
    before?.(at);
    if (replay !== null) {
      for (const f of replay) {
        // Never a writer's own update on the connection that wrote it (it has its ACK). A new
        // connection of the same device does get its earlier writes: their ACKs may have been lost.
        if (f.originConn === c.id && f.originNode === this.opts.instance) continue;
        send(ws, new EncodedUpdate(f).for(c.binary));
      }
    } else {
      const env: Envelope = {
        type: MessageType.SNAPSHOT_RESPONSE,
        session_id: c.sessionId,
        timestamp: Date.now(),
        payload: snapshotPayload(c.sessionId, at.version, snap ? snap.state : {}, snap ? snap.updatedAt : Date.now(), at.epoch),
      };
      sendEnv(ws, env);
    }
    c.lastVersion = at.version;
    c.epoch = at.epoch;
    this.noteEpoch(this.sessions.get(c.sessionId), at.epoch);
    const held = c.pending ?? [];
    c.pending = null;
    c.stale = false;
    for (let i = 0; i < held.length; i++) {
      this.deliverTo(c, held[i], new EncodedUpdate(held[i]));
      if (c.pending !== null) {
        // That frame revealed a gap and started another catch-up: it owns the rest.
        (c.pending as UpdateFrame[]).push(...held.slice(i + 1));
        break;
      }
    }
  }

  /** Records the session's current epoch here; a change under known sockets is reported once. */
  private noteEpoch(s: LocalSession | undefined, epoch: string): void {
    if (!s || !epoch || s.epoch === epoch) return;
    const changed = s.epoch !== '';
    s.epoch = epoch;
    if (changed) this.onEpochChanged(s.id);
  }

  /**
   * Re-sends what a socket missed (after a gap, a slow-consumer drain, a bus outage), or the whole
   * state with `snapshot` (SNAPSHOT_REQUEST). If the store fails, the socket is closed so the
   * client resumes: held-back deltas cannot be released safely.
   */
  resync(ws: WS, reason: string, snapshot = false): void {
    const c = connOf(ws);
    if (c.closed || !c.authed) return;
    if (c.pending !== null) {
      // A catch-up is under way and owns the socket's frames; a snapshot asked for meanwhile is
      // sent when it finishes (catchUp), not dropped.
      if (snapshot) c.snapshotWanted = true;
      return;
    }
    this.metrics.hot.resync.inc();
    void this.resyncWithRetry(ws, reason, snapshot);
  }

  /**
   * A store that is briefly away (Redis restarting: its subscriber connection may be back before
   * the command connection) is retried for a few seconds, deltas held meanwhile, before the
   * socket is closed for the client to resume elsewhere.
   */
  private async resyncWithRetry(ws: WS, reason: string, snapshot: boolean): Promise<void> {
    const c = connOf(ws);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.catchUp(ws, snapshot || c.stale ? null : c.lastVersion, c.epoch);
        return;
      } catch (err) {
        if (c.closed) return;
        if (!(err instanceof StoreUnavailableError) || attempt >= RESYNC_ATTEMPTS) {
          this.log.warn({ err: (err as Error).message, reason }, 'resync failed; closing so the client resumes');
          c.pending = null;
          closeCounted(ws, CloseCode.INTERNAL, 'resync failed', this.metrics);
          return;
        }
        await new Promise((r) => setTimeout(r, 100 * 2 ** Math.min(attempt, 4)));
        if (c.closed) return;
      }
    }
  }

  resyncAll(reason: string): void {
    this.log.info({ reason, sessions: this.sessions.size }, 'resyncing all local sockets');
    for (const s of this.sessions.values()) for (const c of s.conns) if (c.ws) this.resync(c.ws, reason);
  }

  /**
   * Safety net for frames the bus lost without anyone noticing (a shard's subscriber reconnecting
   * quietly, a failover): for sessions that heard nothing for `quietMs`, compare the stored version
   * and epoch with what each socket has and resync the ones behind, or with one snapshot the ones
   * of another epoch or ahead of the store (it lost data). Gap detection covers every session that
   * keeps changing; this covers the last change before a quiet spell.
   */
  async checkVersions(quietMs: number): Promise<number> {
    const started = Date.now();
    const quiet: LocalSession[] = [];
    for (const s of this.sessions.values()) if (started - s.lastFrameAt >= quietMs) quiet.push(s);
    let healed = 0;
    // A chunk at a time, one store call each: a read per session, all in flight together, made
    // a node holding many idle sessions promote thousands of promises into the old generation
    // every round (its heap, and so its memory per connection, grew by a third).
    for (let i = 0; i < quiet.length; i += VERSION_CHECK_CHUNK) {
      const chunk = quiet.slice(i, i + VERSION_CHECK_CHUNK);
      const heads = await this.store.heads(chunk.map((s) => s.id));
      for (let j = 0; j < chunk.length; j++) {
        // A frame that came meanwhile is newer than the head read: the session is not quiet.
        if (chunk[j].lastFrameAt < started) healed += this.checkSession(chunk[j], heads[j]);
      }
    }
    return healed;
  }

  /** Resyncs the session's sockets that are behind `head`, or of another epoch; returns how many. */
  private checkSession(s: LocalSession, head: SessionHead | null): number {
    if (!head) return 0;
    this.noteEpoch(s, head.epoch);
    let healed = 0;
    for (const c of s.conns) {
      if (!c.ws || !c.authed || c.closed || c.pending !== null || c.stale) continue;
      const regressed = head.epoch !== c.epoch || head.version < c.lastVersion;
      if (regressed || c.lastVersion < head.version) {
        healed++;
        this.resync(c.ws, 'version check', regressed);
      }
    }
    return healed;
  }

  /** A socket drained: a slow one gets the current state in one snapshot instead of the backlog. */
  drained(ws: WS): void {
    const c = connOf(ws);
    const buffered = ws.getBufferedAmount();
    if (buffered === 0) c.backpressured = false;
    if (c.stale && buffered < this.opts.slowConsumerBytes / 2) this.resync(ws, 'drain');
  }

  private onFrame(data: Uint8Array): void {
    const f = decodeBusFrame(data);
    if (!f) {
      this.log.warn('dropping malformed bus frame');
      return;
    }
    if (f.kind === BusKind.UPDATE) this.deliver(f);
    else this.onControl(f);
  }

  private deliver(f: UpdateFrame): void {
    const now = Date.now();
    if (f.updatedAt > 0) this.metrics.hot.busLag.observe(Math.max(0, now - f.updatedAt) / 1000);
    const s = this.sessions.get(f.sessionId);
    if (!s) return;
    s.lastFrameAt = now;
    this.noteEpoch(s, f.epoch);
    const encoded = new EncodedUpdate(f);
    for (const c of s.conns) {
      if (c.pending !== null) {
        c.pending.push(f);
        continue;
      }
      this.deliverTo(c, f, encoded);
    }
  }

  private deliverTo(c: Conn, f: UpdateFrame, encoded: EncodedFrame): void {
    const ws = c.ws;
    if (c.closed || !ws) return;
    if (f.epoch !== c.epoch) {
      // The session was created anew: versions restart, so compare nothing; one snapshot of now.
      this.resync(ws, 'epoch', true);
      return;
    }
    if (f.version <= c.lastVersion) return;
    if (c.stale) {
      // Only the drain handler brings a slow socket back (with one snapshot); a "gap" here is expected.
      this.metrics.hot.skippedSlow.inc();
      return;
    }
    if (f.version > c.lastVersion + 1) {
      // A frame went missing (bus outage): heal from the update log.
      this.resync(ws, 'gap');
      return;
    }
    if (f.originConn === c.id && f.originNode === this.opts.instance) {
      c.lastVersion = f.version; // the writer gets its ACK, never its own update
      return;
    }
    // The buffer is asked only once a send reported backpressure: one call into uWS per delivery.
    if (c.backpressured && ws.getBufferedAmount() > this.opts.slowConsumerBytes) {
      c.stale = true;
      this.metrics.hot.skippedSlow.inc();
      return;
    }
    const data = encoded.for(c.binary);
    // uWS: 1 sent, 0 buffered (backpressure building up), 2 dropped past maxBackpressure.
    c.backpressured = ws.send(data, typeof data !== 'string') !== 1;
    c.lastVersion = f.version;
    this.metrics.hot.delivered.inc();
  }
}

export interface CatchUpResult {
  readonly resumed: boolean;
  readonly version: number;
  readonly epoch: string;
}

/**
 * The log's frames when they decode and continue `after` one version at a time; null when the log
 * has a hole, which a replay must never hand a client (it would take the missing version as seen).
 */
function replayOf(frames: readonly Uint8Array[], after: number): UpdateFrame[] | null {
  const out: UpdateFrame[] = [];
  let version = after;
  for (const data of frames) {
    const f = decodeBusFrame(data);
    if (!f || f.kind !== BusKind.UPDATE || f.version !== version + 1) return null;
    out.push(f);
    version = f.version;
  }
  return out;
}
