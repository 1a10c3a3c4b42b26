import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ReplyError } from 'ioredis';
import { Packr } from 'msgpackr';
import type { JsonObject, JsonValue } from '@harmonyflow/protocol';
import { StoreUnavailableError } from '../errors';
import type { KeySpace } from './keys';
import type { StoreLimits } from './memory';
import type { RedisLike } from './redisClient';
import type {
  HandoffOutcome, HandoffRecord, MutationRequest, MutationResult, Page, RefreshOutcome, SessionStore,
  SessionSummary, Snapshot,
} from './types';
import { byteLength, loadValue, stateFromFlat, storeValue } from './valueCodec';

const LUA_DIR = path.join(__dirname, 'lua');
const lua = (name: string) => readFileSync(path.join(LUA_DIR, `${name}.lua`), 'utf8');

/** Replies that mean "Redis cannot serve right now", as opposed to a bug in our script. */
const TRANSIENT_REPLY = /^(LOADING|BUSY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|NOREPLICAS|MOVED|ASK)\b/;

// cmsgpack emits strings as msgpack str; state values are JSON text, so decode them as strings.
const unpackr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

type Scripts = {
  hfMutateBuffer(numKeys: number, ...args: (string | number)[]): Promise<Buffer>;
  hfRead(numKeys: number, ...args: string[]): Promise<[string[], string[], number] | null>;
  hfClaim(numKeys: number, ...args: (string | number)[]): Promise<[string, number, number]>;
  hfUpdatesSinceBuffer(numKeys: number, ...args: (string | number)[]): Promise<Buffer[] | null>;
  hfRefresh(numKeys: number, ...args: (string | number)[]): Promise<RefreshOutcome>;
  hfConsumeHandoff(numKeys: number, ...args: string[]): Promise<string | string[]>;
};

/**
 * SessionStore on Redis or Redis Cluster. Every mutation is one EVALSHA of `lua/mutate.lua`;
 * reads that need a consistent view are scripts too. Values are stored per top-level key as
 * JSON text (compressed above 1 KiB), so a single-key change never parses the whole state.
 */
export class RedisStore implements SessionStore {
  readonly kind = 'redis' as const;
  private readonly r: RedisLike & Scripts;
  private readonly cluster: boolean;
  private readonly pending = { writes: 0, reads: 0 };
  private readonly flusher: NodeJS.Timeout;
  private readonly publishCommand: 'PUBLISH' | 'SPUBLISH';

  constructor(
    client: RedisLike,
    private readonly keys: KeySpace,
    private readonly limits: StoreLimits,
    private readonly now: () => number = Date.now,
  ) {
    this.cluster = (client as { isCluster?: boolean }).isCluster === true;
    this.publishCommand = this.cluster ? 'SPUBLISH' : 'PUBLISH';
    client.defineCommand('hfMutate', { lua: lua('mutate') });
    client.defineCommand('hfRead', { lua: lua('read') });
    client.defineCommand('hfClaim', { lua: lua('claim') });
    client.defineCommand('hfUpdatesSince', { lua: lua('updatesSince') });
    client.defineCommand('hfRefresh', { lua: lua('refresh') });
    client.defineCommand('hfConsumeHandoff', { lua: lua('consumeHandoff') });
    this.r = client as RedisLike & Scripts;
    this.flusher = setInterval(() => void this.flushCounters(), 1000);
    this.flusher.unref();
  }

  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof ReplyError && !TRANSIENT_REPLY.test((err as Error).message)) throw err;
      throw new StoreUnavailableError(err);
    }
  }

  async mutate(req: MutationRequest): Promise<MutationResult> {
    const k = this.keys.session(req.sessionId);
    const keys: string[] = [
      k.meta, k.state, k.keyVersions, k.log, k.devices,
      req.correlationId && req.deviceId ? this.keys.idempotency(req.sessionId, req.deviceId, req.correlationId) : k.meta + ':noidem',
    ];
    if (!this.cluster) keys.push(this.keys.userSessions(req.ownerId), this.keys.allSessions());
    const args: (string | number)[] = [
      req.sessionId, req.actor.userId, req.actor.admin ? '1' : '0', req.ownerId, req.op.op,
      req.expectVersion ?? '', req.baseVersion ?? '', req.deviceId ?? '', req.appVersion ?? '', req.originNode,
      req.originConn ?? 0, req.correlationId ?? '', this.now(), this.limits.ttlSeconds * 1000, this.limits.maxStateBytes,
      this.limits.logLength, k.channel, this.publishCommand, this.limits.idempotencyTtlMs,
    ];
    const op = req.op;
    switch (op.op) {
      case 'set': {
        const text = JSON.stringify(op.value);
        args.push(op.key, storeValue(text), byteLength(op.key) + byteLength(text));
        break;
      }
      case 'delete':
        args.push(op.key);
        break;
      case 'incr':
        args.push(op.key, op.delta);
        break;
      case 'patch':
      case 'merge':
      case 'replace': {
        const obj = op.op === 'replace' ? op.state : op.changes;
        const names = Object.keys(obj);
        args.push(names.length);
        for (const name of names) {
          const text = JSON.stringify(obj[name]);
          args.push(name, storeValue(text), byteLength(name) + byteLength(text));
        }
        if (op.op === 'patch') args.push(...op.deleted);
        break;
      }
    }
    const raw = await this.call(() => this.r.hfMutateBuffer(keys.length, ...keys, ...args));
    const res = unpackr.unpack(raw) as unknown[];
    const result = decodeMutation(res);
    if (result.status === 'ok' && this.cluster && !result.duplicate) {
      // On Redis Cluster the indexes live in other slots than the session, so they cannot be part
      // of the script; they are derived data (recency, listing), and a lost update heals on the next write.
      // Committed and published already: an index hiccup must not turn into an error (and a retry).
      await this.indexCluster(req.sessionId, result.userId, req.ownerId, result.updatedAt).catch(() => undefined);
    }
    return result;
  }

  /** Mirrors the script's indexing: the owner's own writes move the session to the front of their list. */
  private async indexCluster(sessionId: string, owner: string, writer: string, at: number): Promise<void> {
    const writes: Promise<unknown>[] = [this.r.zadd(this.keys.allSessions(), at, sessionId)];
    if (owner === writer) {
      const userKey = this.keys.userSessions(owner);
      writes.push(this.r.zadd(userKey, at, sessionId).then(() => this.r.pexpire(userKey, this.limits.ttlSeconds * 1000)));
    }
    await Promise.all(writes);
  }

  async get(sessionId: string): Promise<Snapshot | null> {
    const k = this.keys.session(sessionId);
    const res = await this.call(() => this.r.hfRead(2, k.meta, k.state));
    if (!res) return null;
    const [metaFlat, stateFlat, pttl] = res;
    const meta = flatToRecord(metaFlat);
    const now = this.now();
    return {
      sessionId,
      userId: meta.uid,
      version: Number(meta.v) || 0,
      state: stateFromFlat(stateFlat),
      deviceId: meta.dev || null,
      appVersion: meta.app || null,
      createdAt: Number(meta.created) || 0,
      updatedAt: Number(meta.updated) || 0,
      expiresAt: pttl > 0 ? now + pttl : now + this.limits.ttlSeconds * 1000,
    };
  }

  async head(sessionId: string): Promise<{ userId: string; version: number } | null> {
    const [uid, v] = await this.call(() => this.r.hmget(this.keys.session(sessionId).meta, 'uid', 'v'));
    return uid ? { userId: uid, version: Number(v) || 0 } : null;
  }

  async claim(sessionId: string, userId: string): Promise<{ userId: string; version: number; created: boolean }> {
    const k = this.keys.session(sessionId);
    const keys = this.cluster ? [k.meta] : [k.meta, this.keys.userSessions(userId), this.keys.allSessions()];
    const now = this.now();
    const ttl = this.limits.ttlSeconds * 1000;
    const [owner, version, created] = await this.call(() => this.r.hfClaim(keys.length, ...keys, sessionId, userId, now, ttl));
    if (this.cluster && owner === userId) {
      const userKey = this.keys.userSessions(userId);
      await this.call(() => Promise.all([
        this.r.zadd(userKey, now, sessionId).then(() => this.r.pexpire(userKey, ttl)),
        created ? this.r.zadd(this.keys.allSessions(), now, sessionId) : Promise.resolve(0),
      ]));
    }
    return { userId: owner, version: Number(version), created: created === 1 };
  }

  async latestSessionOf(userId: string): Promise<string | null> {
    const key = this.keys.userSessions(userId);
    const ttl = this.limits.ttlSeconds * 1000;
    // The index can outlive sessions that expired; walk newest first until a live one.
    const ids = await this.call(() => this.r.zrevrangebyscore(key, '+inf', this.now() - ttl, 'LIMIT', 0, 20));
    for (const id of ids) {
      const head = await this.head(id);
      if (head && head.userId === userId) return id;
    }
    return null;
  }

  async listSessions(limit: number, cursor: string | null): Promise<Page<SessionSummary>> {
    const key = this.keys.allSessions();
    // Pages are ordered by session id so a cursor stays valid while sessions are being written.
    const ids = await this.call(() => this.r.zrangebyscore(key, this.now() - this.limits.ttlSeconds * 1000, '+inf'));
    ids.sort();
    const startIdx = cursor === null ? 0 : ids.findIndex((id) => id > cursor);
    const from = startIdx < 0 ? ids.length : startIdx;
    const items: SessionSummary[] = [];
    let i = from;
    for (; i < ids.length && items.length < limit; i++) {
      const m = await this.call(() => this.r.hmget(this.keys.session(ids[i]).meta, 'uid', 'v', 'updated'));
      if (m[0]) items.push({ sessionId: ids[i], userId: m[0], version: Number(m[1]) || 0, updatedAt: Number(m[2]) || 0 });
    }
    return { items, nextCursor: i < ids.length && items.length > 0 ? items[items.length - 1].sessionId : null };
  }

  async countSessions(): Promise<number> {
    return this.call(() => this.r.zcount(this.keys.allSessions(), this.now() - this.limits.ttlSeconds * 1000, '+inf'));
  }

  async updatesSince(sessionId: string, afterVersion: number): Promise<Uint8Array[] | null> {
    const k = this.keys.session(sessionId);
    const res = await this.call(() => this.r.hfUpdatesSinceBuffer(2, k.meta, k.log, afterVersion, this.limits.logLength));
    return res ?? null;
  }

  async useRefreshToken(jti: string, family: string, ttlSeconds: number): Promise<RefreshOutcome> {
    return this.call(() => this.r.hfRefresh(2, this.keys.refreshUsed(family, jti), this.keys.refreshRevoked(family), ttlSeconds * 1000));
  }

  async createHandoff(h: HandoffRecord): Promise<void> {
    const key = this.keys.handoff(h.sessionId, h.token);
    await this.call(() => this.r.multi()
      .hset(key, 'src', h.sourceDevice, 'tgt', h.targetDevice, 'v', h.version, 'state', storeValue(JSON.stringify(h.state)), 'created', h.createdAt, 'exp', h.expiresAt)
      .pexpireat(key, h.expiresAt)
      .exec());
  }

  async consumeHandoff(sessionId: string, token: string): Promise<HandoffOutcome> {
    const res = await this.call(() => this.r.hfConsumeHandoff(1, this.keys.handoff(sessionId, token)));
    if (res === 'not_found') return { status: 'not_found' };
    if (res === 'used') return { status: 'used' };
    const f = flatToRecord(res as string[]);
    return {
      status: 'ok',
      handoff: {
        token, sessionId, sourceDevice: f.src, targetDevice: f.tgt, version: Number(f.v),
        state: loadValue(f.state) as JsonObject, createdAt: Number(f.created), expiresAt: Number(f.exp),
      },
    };
  }

  incrCounter(name: 'writes' | 'reads', by = 1): void {
    this.pending[name] += by;
  }

  private async flushCounters(): Promise<void> {
    const { writes, reads } = this.pending;
    if (writes === 0 && reads === 0) return;
    this.pending.writes = 0;
    this.pending.reads = 0;
    try {
      await this.r.multi().hincrby(this.keys.counters(), 'writes', writes).hincrby(this.keys.counters(), 'reads', reads).exec();
    } catch {
      // Redis is away: keep the counts for the next flush rather than losing them.
      this.pending.writes += writes;
      this.pending.reads += reads;
    }
  }

  async counters(): Promise<{ writes: number; reads: number }> {
    const [w, r] = await this.call(() => this.r.hmget(this.keys.counters(), 'writes', 'reads'));
    return { writes: (Number(w) || 0) + this.pending.writes, reads: (Number(r) || 0) + this.pending.reads };
  }

  async ping(): Promise<boolean> {
    try {
      if (this.cluster) return (await (this.r as import('ioredis').Cluster).nodes('master')[0]?.ping()) === 'PONG';
      return (await (this.r as import('ioredis').default).ping()) === 'PONG';
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    clearInterval(this.flusher);
    await this.flushCounters();
  }
}

function flatToRecord(flat: string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

function decodeMutation(r: unknown[]): MutationResult {
  switch (r[0]) {
    case 'ok': {
      const valueText = r[4] as string;
      return {
        status: 'ok',
        version: r[1] as number,
        created: r[2] === 1,
        rebased: r[3] === 1,
        value: valueText ? (JSON.parse(valueText) as JsonValue) : undefined,
        duplicate: r[5] === 1,
        updatedAt: r[6] as number,
        createdAt: r[7] as number,
        userId: r[11] as string,
        deviceId: (r[8] as string) || null,
        appVersion: (r[9] as string) || null,
        state: Array.isArray(r[10]) && r[10].length > 0 ? stateFromFlat(r[10] as string[]) : undefined,
      };
    }
    case 'conflict':
      return {
        status: 'conflict',
        currentVersion: r[1] as number,
        conflictingKeys: Array.isArray(r[2]) ? (r[2] as string[]) : undefined,
        state: stateFromFlat((r[3] as string[]) ?? []),
      };
    case 'not_found':
      return { status: 'not_found' };
    case 'not_a_number':
      return { status: 'not_a_number', key: r[1] as string };
    case 'too_large':
      return { status: 'too_large', bytes: r[1] as number };
    default:
      throw new Error(`unexpected mutate reply ${String(r[0])}`);
  }
}
