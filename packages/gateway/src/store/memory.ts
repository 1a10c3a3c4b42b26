import { encodeUpdateFrame, type JsonObject, type JsonValue } from '@harmonyflow/protocol';
import type { MemoryBus } from '../bus/memory';
import { checkVersion, formatNumber, touchedKeys } from './stateOps';
import type {
  ClaimResult, HandoffOutcome, HandoffRecord, MutationRequest, MutationResult, Page, RefreshOutcome, SessionHead,
  SessionStore, SessionSummary, Snapshot, StoreLimits, UpdatesSince,
} from './types';
import { randomSeed } from './randomSeed';
import { byteLength, loadValue } from './valueCodec';

export type { StoreLimits } from './types';

/** Same bounds as mutate.lua and lua/lib.lua. */
const TOMB_MAX = 1024;
const DEDUPE_GEN = 64;
/** SPEC §10: a correlation id counts as a retry for 5 minutes; after that a client may reuse it. */
const DEDUPE_WINDOW_MS = 300_000;

interface KeyRecord {
  /** JSON text of the value. */
  text: string;
  version: number;
  /** Bytes the key contributes to the state (key + JSON value). */
  size: number;
}

interface SessionRecord {
  /** Creation order, for O(page) listing with a cursor. */
  readonly seq: number;
  readonly userId: string;
  readonly epoch: string;
  readonly createdAt: number;
  version: number;
  updatedAt: number;
  /** Last write or claim by the owner: what "the user's most recent session" orders by. */
  recentAt: number;
  deviceId: string;
  appVersion: string;
  bytes: number;
  expiresAt: number;
  readonly state: Map<string, KeyRecord>;
  /** Deleted keys → deletion version; bounded, with a floor covering the pruned ones. */
  tombs: Map<string, number>;
  tombFloor: number;
  log: { version: number; frame: Uint8Array }[];
  logBytes: number;
  /** Highest mutation id processed per device. */
  readonly marks: Map<string, number>;
  /** Correlation-id dedupe records by write id (device, correlation id). */
  readonly dedupe: DedupeRecords;
}

interface DedupeRecord { at: number; version: number; valueText: string }

interface Expiring<T> {
  value: T;
  expiresAt: number;
}

/**
 * The embedded single-node store: same semantics as RedisStore (the contract suite runs against
 * both), with values kept as JSON text in Maps so hostile keys are plain data. Single-threaded JS
 * makes each `mutate` atomic: every check runs first, then the record is changed in place (no copy
 * of the state per write), and the bus frame is published before `mutate` returns.
 */
export class MemoryStore implements SessionStore {
  readonly kind = 'memory' as const;
  private readonly sessions = new Map<string, SessionRecord>();
  /** Session ids per owner: quota counts and "most recent" without a scan of every session. */
  private readonly byUser = new Map<string, Set<string>>();
  /** Session ids by creation order (`seq`); entries of gone sessions are skipped and compacted. */
  private order: Array<{ seq: number; id: string }> = [];
  private seq = 0;
  private readonly refreshUsed = new Map<string, number>();
  private readonly refreshRevoked = new Map<string, number>();
  private readonly handoffs = new Map<string, Map<string, Expiring<HandoffRecord & { used: boolean }>>>();
  private readonly stats = { writes: 0, reads: 0 };
  private readonly sweeper: NodeJS.Timeout;
  private readonly expiredListeners: Array<(sessionId: string) => void> = [];

  constructor(
    private readonly limits: StoreLimits,
    private readonly bus: MemoryBus | null,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  /** Called with the id of every session that expires (so per-session data elsewhere can go too). */
  onExpired(listener: (sessionId: string) => void): void {
    this.expiredListeners.push(listener);
  }

  private get ttlMs(): number {
    return this.limits.ttlSeconds * 1000;
  }

  private drop(sessionId: string): void {
    const s = this.sessions.get(sessionId);
    if (!s) return;
    this.sessions.delete(sessionId);
    const mine = this.byUser.get(s.userId);
    mine?.delete(sessionId);
    if (mine?.size === 0) this.byUser.delete(s.userId);
    for (const l of this.expiredListeners) l(sessionId);
  }

  private live(sessionId: string): SessionRecord | undefined {
    const s = this.sessions.get(sessionId);
    if (s && s.expiresAt <= this.now()) {
      this.drop(sessionId);
      return undefined;
    }
    return s;
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, s] of this.sessions) if (s.expiresAt <= t) this.drop(id);
    for (const [id, m] of this.handoffs) {
      for (const [token, h] of m) if (h.expiresAt <= t) m.delete(token);
      if (m.size === 0) this.handoffs.delete(id);
    }
    for (const [k, v] of this.refreshUsed) if (v <= t) this.refreshUsed.delete(k);
    for (const [k, v] of this.refreshRevoked) if (v <= t) this.refreshRevoked.delete(k);
    if (this.order.length > 2 * this.sessions.size + 64) {
      this.order = this.order.filter((e) => this.sessions.get(e.id)?.seq === e.seq);
    }
  }

  /** The expiry a session gets when its refresh is due (see lua/lib.lua hf_due), else null. */
  private due(expiresAt: number, now: number): number | null {
    const ttl = this.ttlMs;
    return expiresAt < now + ttl ? now + ttl + Math.floor(ttl / 8) : null;
  }

  /** Live sessions of a user (expired ones are dropped on the way). */
  private ownedBy(userId: string): Array<[string, SessionRecord]> {
    const out: Array<[string, SessionRecord]> = [];
    for (const id of [...(this.byUser.get(userId) ?? [])]) {
      const s = this.live(id);
      if (s) out.push([id, s]);
    }
    return out;
  }

  private create(sessionId: string, userId: string, now: number): SessionRecord {
    const s: SessionRecord = {
      seq: ++this.seq, userId, epoch: randomSeed() + now.toString(16), createdAt: now, version: 0,
      updatedAt: now, recentAt: now, deviceId: '', appVersion: '', bytes: 0, expiresAt: now + this.ttlMs + Math.floor(this.ttlMs / 8),
      state: new Map(), tombs: new Map(), tombFloor: 0, log: [], logBytes: 0, marks: new Map(),
      dedupe: new DedupeRecords(),
    };
    this.sessions.set(sessionId, s);
    this.order.push({ seq: s.seq, id: sessionId });
    let mine = this.byUser.get(userId);
    if (!mine) this.byUser.set(userId, (mine = new Set()));
    mine.add(sessionId);
    return s;
  }

  private overQuota(userId: string): boolean {
    const max = this.limits.maxSessionsPerUser;
    return max > 0 && this.ownedBy(userId).length >= max;
  }

  async mutate(req: MutationRequest): Promise<MutationResult> {
    const now = this.now();
    const s = this.live(req.sessionId);
    if (s && s.userId !== req.actor.userId && !req.actor.admin) return { status: 'not_found' };
    const dev = req.deviceId ?? '';
    const useMid = req.mutationId !== undefined && dev !== '';
    const writeId = !useMid && req.correlationId && dev ? `${dev.length}:${dev}${req.correlationId}` : null;

    if (s) {
      const duplicate = (version: number, valueText: string): MutationResult => ({
        status: 'ok', version, created: false, rebased: false, value: valueText ? (JSON.parse(valueText) as JsonValue) : undefined,
        duplicate: true, updatedAt: s.updatedAt, createdAt: s.createdAt, userId: s.userId, deviceId: s.deviceId || null,
        appVersion: s.appVersion || null, epoch: s.epoch, expiresAt: s.expiresAt,
      });
      if (useMid && req.mutationId! <= (s.marks.get(dev) ?? 0)) return duplicate(s.version, '');
      if (writeId) {
        const hit = s.dedupe.find(writeId, now);
        if (hit) return duplicate(hit.version, hit.valueText);
      }
    }
    // A refusal a retry would repeat still counts as processing the mutation id (SPEC §10).
    const refuse = (r: MutationResult): MutationResult => {
      if (useMid && s) s.marks.set(dev, req.mutationId!);
      return r;
    };
    const stateNow = (): JsonObject => (s ? stateOf(s) : Object.create(null));

    const current = s ? s.version : 0;
    const op = req.op;
    // Compute every new stored value first: nothing is written unless the whole change is valid.
    const writes: [string, string | null][] = [];
    let incrText = '';
    switch (op.op) {
      case 'set':
        writes.push([op.key, JSON.stringify(op.value)]);
        break;
      case 'delete':
        writes.push([op.key, null]);
        break;
      case 'incr': {
        const old = s?.state.get(op.key);
        const base: unknown = old === undefined ? 0 : JSON.parse(old.text);
        const next = (base as number) + op.delta;
        if (typeof base !== 'number' || !Number.isFinite(next)) return refuse({ status: 'not_a_number', key: op.key });
        incrText = formatNumber(next);
        writes.push([op.key, incrText]);
        break;
      }
      case 'patch':
        for (const k of Object.keys(op.changes)) writes.push([k, JSON.stringify(op.changes[k])]);
        for (const k of op.deleted) writes.push([k, null]);
        break;
      case 'merge':
        for (const k of Object.keys(op.changes)) writes.push([k, JSON.stringify(op.changes[k])]);
        break;
      case 'replace':
        for (const k of Object.keys(op.state)) writes.push([k, JSON.stringify(op.state[k])]);
        break;
    }
    const check = checkVersion(current, req.expectVersion, req.baseVersion, touchedKeys(op), (k) => {
      const live = s?.state.get(k);
      if (live) return live.version;
      return Math.max(s?.tombs.get(k) ?? 0, s?.tombFloor ?? 0);
    });
    if (!check.ok) return refuse({ status: 'conflict', currentVersion: current, conflictingKeys: check.conflictingKeys, state: stateNow() });

    // Size after the change, and the keys that leave the state (only those that existed get tombstones).
    let bytes = s ? s.bytes : 0;
    const gone: string[] = [];
    if (op.op === 'replace') {
      bytes = 0;
      const next = new Set<string>();
      for (const [k, text] of writes) {
        bytes += byteLength(k) + byteLength(text!);
        next.add(k);
      }
      if (s) for (const k of s.state.keys()) if (!next.has(k)) gone.push(k);
    } else {
      const sizes = new Map<string, number>();
      for (const [k, text] of writes) {
        const old = sizes.has(k) ? sizes.get(k)! : (s?.state.get(k)?.size ?? 0);
        const size = text === null ? 0 : byteLength(k) + byteLength(text);
        bytes += size - old;
        if (text === null && old > 0) gone.push(k);
        sizes.set(k, size);
      }
    }
    if (bytes > this.limits.maxStateBytes) return refuse({ status: 'too_large', bytes });
    if (!s && this.overQuota(req.ownerId)) return { status: 'quota_exceeded' };

    // All checks passed: write, in place.
    const rec = s ?? this.create(req.sessionId, req.ownerId, now);
    const version = current + 1;
    if (op.op === 'replace') rec.state.clear();
    for (const [k, text] of writes) {
      if (text === null) rec.state.delete(k);
      else rec.state.set(k, { text, version, size: byteLength(k) + byteLength(text) });
    }
    if (gone.length > 0) {
      if (rec.tombs.size + gone.length > TOMB_MAX) {
        rec.tombs = new Map();
        rec.tombFloor = version;
      } else {
        for (const k of gone) rec.tombs.set(k, version);
      }
    }
    rec.version = version;
    rec.bytes = bytes;
    rec.updatedAt = now;
    if (rec.userId === req.ownerId) rec.recentAt = now;
    if (dev) rec.deviceId = dev;
    if (req.appVersion) rec.appVersion = req.appVersion;
    rec.expiresAt = this.due(rec.expiresAt, now) ?? rec.expiresAt;
    if (useMid) rec.marks.set(dev, req.mutationId!);
    if (writeId) rec.dedupe.add(writeId, { at: now, version, valueText: incrText });

    const frame = this.frameFor(req, rec, version, now, writes, incrText);
    this.appendLog(rec, version, frame);
    this.bus?.publishNow(req.sessionId, frame);

    return {
      status: 'ok', version, created: current === 0, rebased: check.rebased, value: incrText ? (JSON.parse(incrText) as JsonValue) : undefined,
      duplicate: false, updatedAt: now, createdAt: rec.createdAt, userId: rec.userId, deviceId: rec.deviceId || null,
      appVersion: rec.appVersion || null, state: op.op === 'merge' ? stateOf(rec) : undefined, epoch: rec.epoch,
      expiresAt: rec.expiresAt,
    };
  }

  /** Appends and trims like mutate.lua: by entries and by bytes, each in batches of an eighth, keeping the newest. */
  private appendLog(rec: SessionRecord, version: number, frame: Uint8Array): void {
    rec.log.push({ version, frame });
    rec.logBytes += frame.byteLength;
    const { logLength, logMaxBytes } = this.limits;
    if (rec.log.length <= logLength + Math.max(1, Math.floor(logLength / 8)) && rec.logBytes <= logMaxBytes) return;
    const byteTarget = logMaxBytes - Math.floor(logMaxBytes / 8);
    let drop = 0;
    while (rec.log.length - drop > 1 && (rec.log.length - drop > logLength || rec.logBytes > byteTarget)) {
      rec.logBytes -= rec.log[drop].frame.byteLength;
      drop++;
    }
    rec.log.splice(0, drop);
  }

  private frameFor(req: MutationRequest, s: SessionRecord, version: number, now: number, writes: [string, string | null][], incrText: string): Uint8Array {
    const op = req.op;
    const fields: string[] = [];
    const deleted: string[] = [];
    let key = '';
    let value = '';
    let delta = 0;
    if (op.op === 'set' || op.op === 'delete' || op.op === 'incr') {
      key = op.key;
      value = writes[0][1] ?? '';
      if (op.op === 'incr') {
        delta = op.delta;
        value = incrText;
      }
    } else if (op.op === 'patch' || op.op === 'replace') {
      for (const [k, text] of writes) {
        if (text === null) deleted.push(k);
        else fields.push(k, text);
      }
    } else {
      for (const [k, r] of s.state) fields.push(k, r.text);
    }
    return encodeUpdateFrame({
      sessionId: req.sessionId, version, originNode: req.originNode, originConn: req.originConn ?? 0,
      deviceId: req.deviceId ?? '', correlationId: req.correlationId ?? '', op: op.op, key, value, delta,
      fields, deleted, updatedAt: now, epoch: s.epoch,
    });
  }

  async get(sessionId: string): Promise<Snapshot | null> {
    const s = this.live(sessionId);
    if (!s) return null;
    return {
      sessionId, userId: s.userId, version: s.version, epoch: s.epoch, state: stateOf(s), deviceId: s.deviceId || null,
      appVersion: s.appVersion || null, createdAt: s.createdAt, updatedAt: s.updatedAt, expiresAt: s.expiresAt,
    };
  }

  async head(sessionId: string): Promise<SessionHead | null> {
    return this.headOf(sessionId);
  }

  async heads(sessionIds: readonly string[]): Promise<Array<SessionHead | null>> {
    return sessionIds.map((id) => this.headOf(id));
  }

  private headOf(sessionId: string): SessionHead | null {
    const s = this.live(sessionId);
    return s ? { userId: s.userId, version: s.version, epoch: s.epoch } : null;
  }

  async claim(sessionId: string, userId: string, deviceId = '', admin = false): Promise<ClaimResult> {
    const now = this.now();
    let s = this.live(sessionId);
    if (s) {
      // Someone who may not join learns the owner (to be refused) and changes nothing.
      if (s.userId !== userId && !admin) return { status: 'ok', userId: s.userId, version: s.version, epoch: s.epoch, created: false, lastMutationId: 0 };
      if (s.userId === userId) s.recentAt = now;
      s.expiresAt = this.due(s.expiresAt, now) ?? s.expiresAt;
      return { status: 'ok', userId: s.userId, version: s.version, epoch: s.epoch, created: false, lastMutationId: s.marks.get(deviceId) ?? 0 };
    }
    if (this.overQuota(userId)) return { status: 'quota_exceeded' };
    s = this.create(sessionId, userId, now);
    return { status: 'ok', userId, version: 0, epoch: s.epoch, created: true, lastMutationId: 0 };
  }

  async keepAlive(sessionIds: readonly string[]): Promise<void> {
    const now = this.now();
    for (const id of sessionIds) {
      const s = this.live(id);
      if (s) s.expiresAt = this.due(s.expiresAt, now) ?? s.expiresAt;
    }
  }

  async sessionsOfUser(userId: string): Promise<SessionSummary[]> {
    return this.ownedBy(userId).map(([id, s]) => summary(id, s));
  }

  async latestSessionOf(userId: string): Promise<string | null> {
    let best: string | null = null;
    let bestAt = -1;
    for (const [id, s] of this.ownedBy(userId)) {
      if (s.recentAt >= bestAt) {
        best = id;
        bestAt = s.recentAt;
      }
    }
    return best;
  }

  async listSessions(limit: number, cursor: string | null): Promise<Page<SessionSummary>> {
    const t = this.now();
    const after = cursor && /^\d+$/.test(cursor) ? Number(cursor) : 0;
    // `order` is sorted by seq (append-only): binary search for the first entry after the cursor.
    let lo = 0;
    let hi = this.order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.order[mid].seq <= after) lo = mid + 1;
      else hi = mid;
    }
    const items: SessionSummary[] = [];
    let lastSeq = after;
    let i = lo;
    for (; i < this.order.length && items.length < limit; i++) {
      const { seq, id } = this.order[i];
      const s = this.sessions.get(id);
      if (!s || s.seq !== seq || s.expiresAt <= t) continue;
      items.push(summary(id, s));
      lastSeq = seq;
    }
    return { items, nextCursor: i < this.order.length && items.length > 0 ? String(lastSeq) : null };
  }

  async countSessions(): Promise<number> {
    const t = this.now();
    let n = 0;
    for (const s of this.sessions.values()) if (s.expiresAt > t) n++;
    return n;
  }

  async updatesSince(sessionId: string, afterVersion: number, epoch: string | null): Promise<UpdatesSince | null> {
    const s = this.live(sessionId);
    if (!s || (epoch !== null && epoch !== s.epoch)) return null;
    if (afterVersion === s.version) return { epoch: s.epoch, frames: [] };
    if (afterVersion > s.version || afterVersion < 0 || s.log.length === 0 || s.log[0].version > afterVersion + 1) return null;
    const from = afterVersion + 1 - s.log[0].version;
    return { epoch: s.epoch, frames: s.log.slice(from).map((e) => e.frame) };
  }

  async useRefreshToken(jti: string, family: string, ttlSeconds: number): Promise<RefreshOutcome> {
    const t = this.now();
    const revokedUntil = this.refreshRevoked.get(family);
    if (revokedUntil !== undefined && revokedUntil > t) return 'revoked';
    const key = `${family}\0${jti}`;
    const usedUntil = this.refreshUsed.get(key);
    if (usedUntil !== undefined && usedUntil > t) {
      this.refreshRevoked.set(family, t + ttlSeconds * 1000);
      return 'reused';
    }
    this.refreshUsed.set(key, t + ttlSeconds * 1000);
    return 'ok';
  }

  async createHandoff(record: HandoffRecord): Promise<'ok' | 'quota_exceeded'> {
    const t = this.now();
    let m = this.handoffs.get(record.sessionId);
    if (!m) this.handoffs.set(record.sessionId, (m = new Map()));
    // Used tokens stay until they expire (a second use is 410, not 404); only unused ones count.
    let live = 0;
    for (const [token, h] of m) {
      if (h.expiresAt <= t) m.delete(token);
      else if (!h.value.used) live++;
    }
    const max = this.limits.maxHandoffsPerSession;
    if (max > 0 && live >= max) return 'quota_exceeded';
    m.set(record.token, { value: { ...record, used: false }, expiresAt: record.expiresAt });
    return 'ok';
  }

  async consumeHandoff(sessionId: string, token: string): Promise<HandoffOutcome> {
    const h = this.handoffs.get(sessionId)?.get(token);
    if (!h || h.expiresAt <= this.now()) return { status: 'not_found' };
    if (h.value.used) return { status: 'used' };
    h.value.used = true;
    const { used: _used, ...handoff } = h.value;
    return { status: 'ok', handoff };
  }

  backlogMs(): number {
    return 0;
  }

  incrCounter(name: 'writes' | 'reads', by = 1): void {
    this.stats[name] += by;
  }

  async counters(): Promise<{ writes: number; reads: number }> {
    return { ...this.stats };
  }

  async ping(): Promise<boolean> {
    return true;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}

/**
 * Correlation-id dedupe records in two generations, as lua/mutate.lua hf_dedupe_*: records go into
 * the current one; when it holds DEDUPE_GEN, the previous one is dropped and an empty one becomes
 * current. The newest DEDUPE_GEN to 2 * DEDUPE_GEN - 1 records stay, each a retry for the window.
 */
class DedupeRecords {
  private current = new Map<string, DedupeRecord>();
  private previous = new Map<string, DedupeRecord>();

  /** The record of `writeId` still within the window, if any. */
  find(writeId: string, now: number): DedupeRecord | undefined {
    const a = this.current.get(writeId);
    if (a && now - a.at <= DEDUPE_WINDOW_MS) return a;
    const b = this.previous.get(writeId);
    if (b && now - b.at <= DEDUPE_WINDOW_MS) return b;
    return undefined;
  }

  /** Records a write; a stale record of the same id in the current generation is replaced. */
  add(writeId: string, record: DedupeRecord): void {
    const replacing = this.current.has(writeId);
    this.current.set(writeId, record);
    if (!replacing && this.current.size >= DEDUPE_GEN) {
      this.previous = this.current;
      this.current = new Map();
    }
  }
}

function summary(id: string, s: SessionRecord): SessionSummary {
  return { sessionId: id, userId: s.userId, version: s.version, epoch: s.epoch, updatedAt: s.updatedAt, expiresAt: s.expiresAt };
}

function stateOf(s: SessionRecord): JsonObject {
  const out: JsonObject = Object.create(null);
  for (const [k, r] of s.state) out[k] = loadValue(r.text);
  return out;
}
