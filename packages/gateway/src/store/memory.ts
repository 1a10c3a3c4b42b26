import { encodeUpdateFrame, type JsonObject, type JsonValue, type UpdateOp } from '@harmonyflow/protocol';
import type { MemoryBus } from '../bus/memory';
import { checkVersion, formatNumber, touchedKeys } from './stateOps';
import type {
  HandoffOutcome, HandoffRecord, MutationRequest, MutationResult, Page, RefreshOutcome, SessionStore,
  SessionSummary, Snapshot,
} from './types';
import { byteLength, loadValue } from './valueCodec';

export interface StoreLimits {
  readonly ttlSeconds: number;
  readonly maxStateBytes: number;
  /** Update log length kept per session for resume. */
  readonly logLength: number;
  readonly idempotencyTtlMs: number;
}

interface KeyMeta {
  version: number;
  /** Bytes the key contributes (key + JSON value); 0 for a deleted key (tombstone). */
  size: number;
}

interface SessionRecord {
  userId: string;
  version: number;
  createdAt: number;
  updatedAt: number;
  /** Last write or join by the owner: what "the user's most recent session" orders by. */
  recentAt: number;
  deviceId: string;
  appVersion: string;
  bytes: number;
  expiresAt: number;
  state: Map<string, string>;
  keys: Map<string, KeyMeta>;
  log: { version: number; frame: Uint8Array }[];
}

interface Expiring<T> {
  value: T;
  expiresAt: number;
}

/**
 * The embedded single-node store: same semantics as RedisStore (the contract suite runs against
 * both), with values kept as JSON text in Maps so hostile keys are plain data. Single-threaded JS
 * makes each `mutate` atomic; the bus frame is published before `mutate` returns.
 */
export class MemoryStore implements SessionStore {
  readonly kind = 'memory' as const;
  private readonly sessions = new Map<string, SessionRecord>();
  private readonly idempotent = new Map<string, Expiring<MutationResult>>();
  private readonly refreshUsed = new Map<string, number>();
  private readonly refreshRevoked = new Map<string, number>();
  private readonly handoffs = new Map<string, Expiring<HandoffRecord & { used: boolean }>>();
  private readonly stats = { writes: 0, reads: 0 };
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly limits: StoreLimits,
    private readonly bus: MemoryBus | null,
    private readonly now: () => number = Date.now,
  ) {
    this.sweeper = setInterval(() => this.sweep(), 30_000);
    this.sweeper.unref();
  }

  private live(sessionId: string): SessionRecord | undefined {
    const s = this.sessions.get(sessionId);
    if (s && s.expiresAt <= this.now()) {
      this.sessions.delete(sessionId);
      return undefined;
    }
    return s;
  }

  private sweep(): void {
    const t = this.now();
    for (const [id, s] of this.sessions) if (s.expiresAt <= t) this.sessions.delete(id);
    for (const [k, v] of this.idempotent) if (v.expiresAt <= t) this.idempotent.delete(k);
    for (const [k, v] of this.handoffs) if (v.expiresAt <= t) this.handoffs.delete(k);
    for (const [k, v] of this.refreshUsed) if (v <= t) this.refreshUsed.delete(k);
    for (const [k, v] of this.refreshRevoked) if (v <= t) this.refreshRevoked.delete(k);
  }

  async mutate(req: MutationRequest): Promise<MutationResult> {
    const now = this.now();
    const idemKey = req.correlationId && req.deviceId ? `${req.sessionId}\0${req.deviceId}\0${req.correlationId}` : null;
    if (idemKey) {
      const hit = this.idempotent.get(idemKey);
      if (hit && hit.expiresAt > now) return { ...hit.value, duplicate: true } as MutationResult;
    }
    let s = this.live(req.sessionId);
    if (s && s.userId !== req.actor.userId && !req.actor.admin) return { status: 'not_found' };
    const current = s ? s.version : 0;
    const op = req.op;
    const check = checkVersion(current, req.expectVersion, req.baseVersion, touchedKeys(op), (k) => s?.keys.get(k)?.version ?? 0);
    if (!check.ok) {
      return { status: 'conflict', currentVersion: current, conflictingKeys: check.conflictingKeys, state: s ? stateOf(s) : Object.create(null) };
    }

    // Compute every new stored value first: nothing is written unless the whole change is valid.
    const writes: [string, string | null][] = [];
    let incrValue: JsonValue | undefined;
    switch (op.op) {
      case 'set':
        writes.push([op.key, JSON.stringify(op.value)]);
        break;
      case 'delete':
        writes.push([op.key, null]);
        break;
      case 'incr': {
        const old = s?.state.get(op.key);
        const base: unknown = old === undefined ? 0 : JSON.parse(old);
        const next = (base as number) + op.delta;
        if (typeof base !== 'number' || !Number.isFinite(next)) {
          return { status: 'not_a_number', key: op.key };
        }
        incrValue = next;
        writes.push([op.key, formatNumber(next)]);
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
        break;
    }

    const version = current + 1;
    let bytes: number;
    let nextKeys: Map<string, KeyMeta>;
    let nextState: Map<string, string>;
    if (op.op === 'replace') {
      nextState = new Map();
      nextKeys = new Map();
      bytes = 0;
      for (const k of Object.keys(op.state)) {
        const text = JSON.stringify(op.state[k]);
        const size = byteLength(k) + byteLength(text);
        nextState.set(k, text);
        nextKeys.set(k, { version, size });
        bytes += size;
      }
      if (s) for (const k of s.state.keys()) if (!nextState.has(k)) nextKeys.set(k, { version, size: 0 });
    } else {
      nextState = s ? new Map(s.state) : new Map();
      nextKeys = s ? new Map(s.keys) : new Map();
      bytes = s ? s.bytes : 0;
      for (const [k, text] of writes) {
        const size = text === null ? 0 : byteLength(k) + byteLength(text);
        bytes += size - (nextKeys.get(k)?.size ?? 0);
        nextKeys.set(k, { version, size });
        if (text === null) nextState.delete(k);
        else nextState.set(k, text);
      }
    }
    if (bytes > this.limits.maxStateBytes) return { status: 'too_large', bytes };

    const created = current === 0;
    if (!s) {
      s = {
        userId: req.ownerId, version: 0, createdAt: now, updatedAt: now, recentAt: now, deviceId: '', appVersion: '', bytes: 0,
        expiresAt: 0, state: nextState, keys: nextKeys, log: [],
      };
      this.sessions.set(req.sessionId, s);
    }
    s.version = version;
    s.state = nextState;
    s.keys = nextKeys;
    s.bytes = bytes;
    s.updatedAt = now;
    if (s.userId === req.ownerId) s.recentAt = now;
    if (req.deviceId) s.deviceId = req.deviceId;
    if (req.appVersion) s.appVersion = req.appVersion;
    s.expiresAt = now + this.limits.ttlSeconds * 1000;

    const frame = this.frameFor(req, s, version, now, writes, incrValue);
    s.log.push({ version, frame });
    if (s.log.length > this.limits.logLength) s.log.splice(0, s.log.length - this.limits.logLength);
    this.bus?.publishNow(req.sessionId, frame);

    const result: MutationResult = {
      status: 'ok', version, created, rebased: check.rebased, value: incrValue, duplicate: false, updatedAt: now,
      createdAt: s.createdAt, userId: s.userId, deviceId: s.deviceId || null, appVersion: s.appVersion || null,
      state: op.op === 'merge' ? stateOf(s) : undefined,
    };
    if (idemKey) this.idempotent.set(idemKey, { value: result, expiresAt: now + this.limits.idempotencyTtlMs });
    return result;
  }

  private frameFor(
    req: MutationRequest, s: SessionRecord, version: number, now: number,
    writes: [string, string | null][], incrValue: JsonValue | undefined,
  ): Uint8Array {
    const op = req.op;
    const fields: string[] = [];
    const deleted: string[] = [];
    let key = '';
    let value = '';
    let delta = 0;
    const opName: UpdateOp = op.op;
    if (op.op === 'set' || op.op === 'delete' || op.op === 'incr') {
      key = op.key;
      value = writes[0][1] ?? '';
      if (op.op === 'incr') {
        delta = op.delta;
        value = formatNumber(incrValue as number);
      }
    } else if (op.op === 'patch') {
      for (const [k, text] of writes) {
        if (text === null) deleted.push(k);
        else fields.push(k, text);
      }
    } else {
      for (const [k, text] of s.state) fields.push(k, text);
    }
    return encodeUpdateFrame({
      sessionId: req.sessionId, version, originNode: req.originNode, originConn: req.originConn ?? 0,
      deviceId: req.deviceId ?? '', correlationId: req.correlationId ?? '', op: opName, key, value, delta,
      fields, deleted, updatedAt: now,
    });
  }

  async get(sessionId: string): Promise<Snapshot | null> {
    const s = this.live(sessionId);
    if (!s) return null;
    return {
      sessionId, userId: s.userId, version: s.version, state: stateOf(s), deviceId: s.deviceId || null,
      appVersion: s.appVersion || null, createdAt: s.createdAt, updatedAt: s.updatedAt, expiresAt: s.expiresAt,
    };
  }

  async head(sessionId: string): Promise<{ userId: string; version: number } | null> {
    const s = this.live(sessionId);
    return s ? { userId: s.userId, version: s.version } : null;
  }

  async claim(sessionId: string, userId: string): Promise<{ userId: string; version: number; created: boolean }> {
    const existing = this.live(sessionId);
    const now = this.now();
    if (existing) {
      if (existing.userId === userId) existing.recentAt = now;
      return { userId: existing.userId, version: existing.version, created: false };
    }
    this.sessions.set(sessionId, {
      userId, version: 0, createdAt: now, updatedAt: now, recentAt: now, deviceId: '', appVersion: '', bytes: 0,
      expiresAt: now + this.limits.ttlSeconds * 1000, state: new Map(), keys: new Map(), log: [],
    });
    return { userId, version: 0, created: true };
  }

  async latestSessionOf(userId: string): Promise<string | null> {
    let best: string | null = null;
    let bestAt = -1;
    const t = this.now();
    for (const [id, s] of this.sessions) {
      if (s.userId === userId && s.expiresAt > t && s.recentAt >= bestAt) {
        best = id;
        bestAt = s.recentAt;
      }
    }
    return best;
  }

  async listSessions(limit: number, cursor: string | null): Promise<Page<SessionSummary>> {
    const t = this.now();
    const all = [...this.sessions.entries()]
      .filter(([, s]) => s.expiresAt > t)
      .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const start = cursor ? all.findIndex(([id]) => id > cursor) : 0;
    const from = start < 0 ? all.length : start;
    const items = all.slice(from, from + limit).map(([id, s]) => ({ sessionId: id, userId: s.userId, version: s.version, updatedAt: s.updatedAt }));
    const nextCursor = from + limit < all.length ? items[items.length - 1].sessionId : null;
    return { items, nextCursor };
  }

  async countSessions(): Promise<number> {
    const t = this.now();
    let n = 0;
    for (const s of this.sessions.values()) if (s.expiresAt > t) n++;
    return n;
  }

  async updatesSince(sessionId: string, afterVersion: number): Promise<Uint8Array[] | null> {
    const s = this.live(sessionId);
    const current = s ? s.version : 0;
    if (afterVersion === current) return [];
    if (!s || afterVersion > current || afterVersion < 0) return null;
    const first = s.log.length > 0 ? s.log[0].version : current + 1;
    if (first > afterVersion + 1) return null;
    return s.log.filter((e) => e.version > afterVersion).map((e) => e.frame);
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

  async createHandoff(record: HandoffRecord): Promise<void> {
    this.handoffs.set(`${record.sessionId}\0${record.token}`, { value: { ...record, used: false }, expiresAt: record.expiresAt });
  }

  async consumeHandoff(sessionId: string, token: string): Promise<HandoffOutcome> {
    const h = this.handoffs.get(`${sessionId}\0${token}`);
    if (!h || h.expiresAt <= this.now()) return { status: 'not_found' };
    if (h.value.used) return { status: 'used' };
    h.value.used = true;
    const { used: _used, ...handoff } = h.value;
    return { status: 'ok', handoff };
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

function stateOf(s: SessionRecord): JsonObject {
  const out: JsonObject = Object.create(null);
  for (const [k, text] of s.state) out[k] = loadValue(text);
  return out;
}
