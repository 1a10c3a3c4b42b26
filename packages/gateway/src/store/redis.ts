import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ReplyError, type Redis } from 'ioredis';
import type { JsonObject, JsonValue } from '@harmonyflow/protocol';
import { RefusedUnappliedError, StoreUnavailableError } from '../errors';
import { connectedOf, descriptorJson } from '../presence/connectReply';
import type { Connected } from '../presence/types';
import { uncorked } from './coalesceWrites';
import type { KeySpace } from './keys';
import type { RedisLike } from './redisClient';
import { randomSeed } from './randomSeed';
import { unansweredMs } from './timeoutAfterPoll';
import { RedisLibrary, type RedisFunction } from './redisLibrary';
import type {
  ClaimCount, ClaimResult, HandoffOutcome, HandoffRecord, MutationRequest, MutationResult, Page, RefreshOutcome, SessionHead,
  SessionStore, SessionSummary, Snapshot, StateOp, StoreLimits, UpdatesSince,
} from './types';
import { H, header, headOf, snapshotOf, unpackr, type Header } from './sessionRecords';
import { byteLength, loadValue, stateFromFlat, storeValue } from './valueCodec';

const LUA_DIR = path.join(__dirname, 'lua');
const lua = (name: string) => readFileSync(path.join(LUA_DIR, `${name}.lua`), 'utf8');

/** Replies that mean "Redis cannot serve right now", as opposed to a bug in our script. */
const TRANSIENT_REPLY = /^(LOADING|BUSY|CLUSTERDOWN|TRYAGAIN|MASTERDOWN|READONLY|NOREPLICAS|MOVED|ASK)\b/;

/** A command's failure as callers see it: a bug in our script as is, anything else as the store being unavailable. */
function storeFailure(err: unknown): unknown {
  if (err instanceof ReplyError && !TRANSIENT_REPLY.test((err as Error).message)) return err;
  return new StoreUnavailableError(err);
}

/** How long a quota reservation holds a place for a session being created. */
const RESERVATION_MS = 60_000;
/** Bounds of one batched script call: it blocks Redis while it runs. */
const MAX_BATCH = 64;
const MAX_BATCH_BYTES = 512 * 1024;
/**
 * Write batches sent and not yet answered, at most, before the next waits for a reply. Redis runs
 * one command at a time, so a batch sent while another is running would mostly wait in Redis's
 * input buffer; held here instead, it takes in the writes that come meanwhile, and a loaded node
 * sends fewer, larger calls in the same order (measured: no CPU change below capacity, more writes
 * accepted past it; README "What changed this round"). A full batch goes out anyway.
 */
const WRITE_WINDOW = 1;

interface PendingMutation {
  readonly keys: string[];
  readonly args: (string | number)[];
  resolve(reply: Buffer): void;
  reject(err: unknown): void;
}

type Scripts = {
  hfReadBuffer(numKeys: number, ...args: string[]): Promise<[Buffer, Buffer[]] | null>;
  hfHeadersBuffer(numKeys: number, ...keys: string[]): Promise<Array<Buffer | null>>;
  hfKeepAlive(numKeys: number, ...args: (string | number)[]): Promise<[string, number] | null>;
  hfReserve(numKeys: number, ...args: (string | number)[]): Promise<number>;
  hfUpdatesSinceBuffer(numKeys: number, ...args: (string | number)[]): Promise<Buffer[] | null>;
  hfRefreshToken(numKeys: number, ...args: (string | number)[]): Promise<RefreshOutcome>;
  hfCreateHandoff(numKeys: number, ...args: (string | number)[]): Promise<'ok' | 'quota_exceeded'>;
  hfConsumeHandoff(numKeys: number, ...args: string[]): Promise<string | string[]>;
};

/** mutate.lua's success decoded, with the new expiry when it moved (0: it did not). */
type MutateReply = { result: MutationResult; refreshedAt: number };

/** claim.lua's answer ('ok'), and join.lua's count when it took one. */
type ClaimReply = {
  owner: string; version: number; epoch: string; created: boolean; lastMutationId: number;
  /** The expiry the claim moved the session to, when the indexes are still to follow (0: none). */
  refreshed: number;
  connected?: Connected;
};

/**
 * SessionStore on Redis or Redis Cluster. Every mutation runs `lua/mutate.lua` (as a Redis Function,
 * the mutations of one event-loop turn in one FCALL); reads that need a consistent view are scripts too. Values are stored per top-level key as
 * "version|size|JSON text" (the JSON compressed above 1 KiB), so a single-key change never parses
 * the whole state and reads the key's version and size with the same HGET.
 *
 * On Redis Cluster the user and global indexes live in other slots than the session, so they are
 * written after the session's script; they are derived data (recency, listing, quota) kept in step
 * on creation and on each amortised expiry refresh. Quota on creation is reserved first.
 */
export class RedisStore implements SessionStore {
  readonly kind = 'redis' as const;
  private readonly r: RedisLike & Scripts;
  private readonly cluster: boolean;
  private readonly pending = { writes: 0, reads: 0 };
  private readonly flusher: NodeJS.Timeout;
  /** Mutations of the current event-loop turn, sent together (single Redis; see `enqueue`). */
  private batch: PendingMutation[] = [];
  private batchBytes = 0;
  private flushScheduled = false;
  /** Write batches awaiting their reply (see WRITE_WINDOW). */
  private batchesInFlight = 0;
  /** The store's Redis Functions, in one library: every call waits for its load. */
  private readonly lib: RedisLibrary;
  /** The write path (lua/mutate.lua, lua/mutateBatch.lua). */
  private readonly mutateFn: RedisFunction;
  /** Claims, with a device's count when asked (lua/join.lua). */
  private readonly joinFn: RedisFunction;

  constructor(
    client: RedisLike,
    private readonly keys: KeySpace,
    private readonly limits: StoreLimits,
    private readonly now: () => number = Date.now,
    private readonly onIndexError: (err: unknown) => void = () => undefined,
    /** Operational notices worth a log line (the write path's code could not be loaded, or fell back to a script). */
    onNotice: (message: string) => void = () => undefined,
  ) {
    this.cluster = (client as { isCluster?: boolean }).isCluster === true;
    // Per-deployment constants live in the code rather than in every call's arguments (each
    // argument costs Redis about 0.1 µs per call); nodes of one deployment share the code.
    const ttl = this.limits.ttlSeconds * 1000;
    const constants = `local TTL, MAX_STATE, LOG_LEN, LOG_MAX, PUB, PREFIX_LEN = ${ttl}, ${limits.maxStateBytes}, ${limits.logLength}, ` +
      `${limits.logMaxBytes}, '${this.cluster ? 'SPUBLISH' : 'PUBLISH'}', ${Buffer.byteLength(keys.prefix)}\n`;
    const shared = `${constants}${lua('lib')}`;
    const sessionLua = (name: string) => `${shared}\n${lua(name)}`;
    this.lib = new RedisLibrary(client, shared, [
      { name: 'hf_mutate_batch', body: `${lua('mutate')}\n${lua('mutateBatch')}` },
      { name: 'hf_join', body: `${lua('claim')}\n${lua('presenceLib')}\n${lua('join')}` },
    ], onNotice);
    this.mutateFn = this.lib.function('hf_mutate_batch');
    this.joinFn = this.lib.function('hf_join');
    client.defineCommand('hfKeepAlive', { lua: sessionLua('keepAlive') });
    client.defineCommand('hfUpdatesSince', { lua: sessionLua('updatesSince') });
    client.defineCommand('hfRead', { lua: lua('read') });
    client.defineCommand('hfHeaders', { lua: lua('headers') });
    client.defineCommand('hfReserve', { lua: sessionLua('reserve') });
    client.defineCommand('hfRefreshToken', { lua: lua('refreshToken') });
    client.defineCommand('hfCreateHandoff', { lua: lua('createHandoff') });
    client.defineCommand('hfConsumeHandoff', { lua: lua('consumeHandoff') });
    this.r = client as RedisLike & Scripts;
    this.flusher = setInterval(() => void this.flushCounters(), 1000);
    this.flusher.unref();
  }

  /**
   * Every store command goes through here, after the writes made before it: the queued batch is
   * sent first (one connection, so Redis answers in order), and while the write path's code is
   * being loaded, commands wait behind the writes already waiting. A read after a write sees it.
   */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.batch.length > 0) this.flush(true);
    try {
      return await this.lib.whenLoaded(fn);
    } catch (err) {
      throw storeFailure(err);
    }
  }

  /** See SessionStore.backlogMs: the command connection's oldest unanswered command. */
  backlogMs(now: number): number {
    return unansweredMs(this.r, now);
  }

  /**
   * Whether a script may create a session: with a quota, only once the owner's index (another slot
   * on Redis Cluster, and a separate step on one Redis too, since creation is rare) holds a place.
   */
  private creationRule(reserved: boolean): string {
    return this.limits.maxSessionsPerUser <= 0 || reserved ? '-' : 'R';
  }

  /**
   * A session script asked for a reservation (creation under a quota): reserves the owner's place
   * and runs it again; a place reserved for nothing (no session of that owner came of it) is given
   * back.
   */
  private async reserveAndRetry<T>(
    sessionId: string, ownerId: string,
    retry: () => Promise<T | 'needs_reservation'>,
    createdForOwner: (r: T) => boolean,
  ): Promise<T | 'quota_exceeded'> {
    const reserved = await this.reserve(sessionId, ownerId);
    if (reserved === 0) return 'quota_exceeded';
    const second = await retry();
    if (second === 'needs_reservation') throw new Error('a session script asked for a reservation twice');
    if (reserved === 2 && !createdForOwner(second)) await this.unreserve(sessionId, ownerId);
    return second;
  }

  async mutate(req: MutationRequest): Promise<MutationResult> {
    let reply: MutateReply | 'needs_reservation' | 'quota_exceeded' = await this.mutateOnce(req, false);
    if (reply === 'needs_reservation') {
      reply = await this.reserveAndRetry(req.sessionId, req.ownerId, () => this.mutateOnce(req, true),
        ({ result: r }) => r.status === 'ok' && r.created && r.userId === req.ownerId);
    }
    if (reply === 'quota_exceeded') return { status: 'quota_exceeded' };
    const { result, refreshedAt } = reply;
    if (result.status === 'ok' && refreshedAt > 0) this.index(req.sessionId, result.userId, refreshedAt);
    return result;
  }

  private async mutateOnce(req: MutationRequest, reserved: boolean): Promise<MutateReply | 'needs_reservation'> {
    const keys = this.keys.sessionKeyList(req.sessionId);
    // The scalar arguments travel as one space-separated string (see mutate.lua): fewer arguments,
    // less work per call for ioredis and Redis alike.
    const control = `${req.op.op} ${req.actor.admin ? 1 : 0} ${this.creationRule(reserved)} ${req.expectVersion ?? '-'} ` +
      `${req.baseVersion ?? '-'} ${req.mutationId ?? '-'} ${req.originConn ?? 0} ${this.now()} ${randomSeed()}`;
    const args: (string | number)[] = [
      control, req.actor.userId, req.ownerId, req.deviceId ?? '', req.appVersion ?? '', req.originNode, req.correlationId ?? '',
    ];
    opArguments(req.op, args);
    const raw = await this.enqueue(keys, args);
    // A success is two msgpack values: the reply, then the session header as stored.
    const [res, stored] = unpackr.unpackMultiple(raw) as [unknown[], Header | undefined];
    if (res[0] === 'error') throw new Error(`mutate script failed: ${String(res[1])}`);
    if (res[0] === 'needs_reservation') return 'needs_reservation';
    return decodeMutation(res, stored);
  }

  /**
   * Runs one mutation through mutateBatch.lua. On one Redis, the mutations of one event-loop turn
   * (every frame uWS read in that turn) share one call: Redis pays a fixed cost per call, and the
   * gateway one command instead of many. On Redis Cluster sessions sit in different slots, so
   * each goes alone. Order per session is kept: a batch applies in arrival order.
   */
  private enqueue(keys: string[], args: (string | number)[]): Promise<Buffer> {
    if (this.cluster) {
      return this.call(() => this.mutateFn.callBuffer([keys.length, ...keys, args.length, ...args]))
        .then((r) => (r as Buffer[])[0]);
    }
    return new Promise((resolve, reject) => {
      let bytes = 0;
      for (const a of args) bytes += typeof a === 'string' ? a.length : 8;
      if (this.batch.length >= MAX_BATCH || this.batchBytes + bytes > MAX_BATCH_BYTES) this.flush(true);
      this.batch.push({ keys, args, resolve, reject });
      this.batchBytes += bytes;
      this.scheduleFlush();
    });
  }

  /** At the end of this event-loop turn's poll phase: after every frame read in it. */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(this.flushHeld);
  }

  private readonly flushHeld = (): void => this.flush(false);

  /** Sends the batch; unless `now`, only while fewer than WRITE_WINDOW batches await a reply. */
  private flush(now: boolean): void {
    this.flushScheduled = false;
    const items = this.batch;
    if (items.length === 0 || (!now && this.batchesInFlight >= WRITE_WINDOW)) return;
    this.batch = [];
    this.batchBytes = 0;
    // FCALL name numKeys keys… then per change: its argument count, its arguments (RedisFunction
    // puts the name first).
    const call: (string | number)[] = [0];
    for (const m of items) for (const k of m.keys) call.push(k);
    call[0] = call.length - 1;
    for (const m of items) {
      call.push(m.args.length);
      for (const a of m.args) call.push(a);
    }
    // Not through call(): nothing is queued behind a batch being sent, and callBuffer waits for a
    // load itself; one promise hop less per batch.
    // The batch is this turn's write already: out now, not at the next turn's check phase.
    let reply: Promise<unknown>;
    try {
      reply = uncorked(this.r as Redis, () => this.mutateFn.callBuffer(call));
    } catch (err) {
      // Failed before anything was sent: settled like a failed reply, so the window opens again.
      reply = Promise.reject(err);
    }
    this.batchesInFlight++;
    reply.then(
      (replies) => {
        this.batchAnswered();
        for (let i = 0; i < items.length; i++) items[i].resolve((replies as Buffer[])[i]);
      },
      (err: unknown) => {
        const failure = storeFailure(err);
        for (const m of items) m.reject(failure);
        // Timed out, cut off or refused by a Redis that cannot serve: the writes held behind it
        // were never sent, so they are refused now, certainly unapplied, instead of being sent to
        // a store that just failed.
        if (failure instanceof StoreUnavailableError) this.refuseHeld();
        this.batchAnswered();
      },
    );
  }

  private refuseHeld(): void {
    const held = this.batch;
    if (held.length === 0) return;
    this.batch = [];
    this.batchBytes = 0;
    const refusal = new RefusedUnappliedError('session store failed the writes ahead of this one: the change was not applied, retry shortly');
    for (const m of held) m.reject(refusal);
  }

  /** A reply frees the window: what was held goes out with the rest of this turn's writes. */
  private batchAnswered(): void {
    this.batchesInFlight--;
    if (this.batch.length > 0) this.scheduleFlush();
  }

  /** A place in the owner's index: 2 reserved now, 1 already listed, 0 over quota. */
  private reserve(sessionId: string, ownerId: string): Promise<number> {
    const now = this.now();
    return this.call(() => this.r.hfReserve(1, this.keys.userSessions(ownerId), sessionId, now, this.limits.maxSessionsPerUser, now + RESERVATION_MS));
  }

  private async unreserve(sessionId: string, ownerId: string): Promise<void> {
    await this.r.zrem(this.keys.userSessions(ownerId), sessionId).catch(this.onIndexError);
  }

  /**
   * Moves a session's entries in the owner's and the global index to its new expiry. Derived
   * data: a failure is reported, never turned into an error of the committed write.
   */
  private index(sessionId: string, owner: string, exp: number): void {
    const userKey = this.keys.userSessions(owner);
    const all = this.keys.allSessions();
    const now = this.now();
    if (!this.cluster) {
      // One Redis: the five commands in one write (on Redis Cluster the two indexes sit in different slots).
      (this.r as import('ioredis').default).pipeline()
        .zadd(userKey, exp, sessionId).zremrangebyscore(userKey, '-inf', now).pexpireat(userKey, exp)
        .zadd(all, exp, sessionId).zremrangebyscore(all, '-inf', now)
        .exec()
        .then((results) => {
          const failed = results?.find(([err]) => err);
          if (failed) this.onIndexError(failed[0]);
        }, this.onIndexError);
      return;
    }
    Promise.all([
      this.r.zadd(userKey, exp, sessionId).then(() => this.r.zremrangebyscore(userKey, '-inf', now)).then(() => this.r.pexpireat(userKey, exp)),
      this.r.zadd(all, exp, sessionId).then(() => this.r.zremrangebyscore(all, '-inf', now)),
    ]).catch(this.onIndexError);
  }

  async get(sessionId: string): Promise<Snapshot | null> {
    const k = this.keys.session(sessionId);
    const res = await this.call(() => this.r.hfReadBuffer(2, k.meta, k.state));
    return res ? snapshotOf(sessionId, res[0], res[1]) : null;
  }

  private async header(sessionId: string): Promise<Header | null> {
    const raw = await this.call(() => this.r.hgetBuffer(this.keys.meta(sessionId), 'h'));
    return raw ? header(raw) : null;
  }

  async head(sessionId: string): Promise<SessionHead | null> {
    const h = await this.header(sessionId);
    return h ? headOf(h) : null;
  }

  async heads(sessionIds: readonly string[]): Promise<Array<SessionHead | null>> {
    return (await this.headers(sessionIds)).map((raw) => (raw ? headOf(header(raw)) : null));
  }

  /**
   * Many sessions' headers: on one Redis in one call (a command per session would cost the
   * gateway a command object, a promise and a write each, every version check); on Redis Cluster
   * the sessions sit in different slots, so one HGET each.
   */
  private headers(ids: readonly string[]): Promise<Array<Buffer | null>> {
    if (ids.length === 0) return Promise.resolve([]);
    if (this.cluster) return this.call(() => Promise.all(ids.map((id) => this.r.hgetBuffer(this.keys.meta(id), 'h'))));
    const metas = ids.map((id) => this.keys.meta(id));
    return this.call(() => this.r.hfHeadersBuffer(metas.length, ...metas));
  }

  async claim(sessionId: string, userId: string, deviceId = '', admin = false, count?: ClaimCount): Promise<ClaimResult> {
    // Under a quota, one Redis lets the script check it and take the owner's place itself (rule
    // 'Q'); on Redis Cluster the owner's index sits in another slot: reserve there first, if asked.
    const rule = this.limits.maxSessionsPerUser <= 0 ? '-' : this.cluster ? 'R' : 'Q';
    let res = await this.claimOnce(sessionId, userId, deviceId, admin, rule, count);
    if (res === 'needs_reservation') {
      res = await this.reserveAndRetry(sessionId, userId, () => this.claimOnce(sessionId, userId, deviceId, admin, '-', count),
        (r) => r !== 'quota_exceeded' && r.created && r.owner === userId);
    }
    if (res === 'quota_exceeded') return { status: 'quota_exceeded' };
    const { owner, version, epoch, created, lastMutationId, refreshed, connected } = res;
    if (refreshed > 0) this.index(sessionId, owner, refreshed);
    return { status: 'ok', userId: owner, version, epoch, created, lastMutationId, ...(connected ? { connected } : {}) };
  }

  /**
   * join.lua: the claim and, with `count`, when the user may join, the device's count in the
   * registry (presence/redis.ts's, in the session's slot) in the same call.
   */
  private async claimOnce(
    sessionId: string, userId: string, deviceId: string, admin: boolean, rule: '-' | 'R' | 'Q', count?: ClaimCount,
  ): Promise<ClaimReply | 'needs_reservation' | 'quota_exceeded'> {
    const keys = this.keys.sessionKeyList(sessionId);
    // One Redis: the script reaches the indexes, and keeps them in step itself (claim.lua).
    if (!this.cluster) keys.push(this.keys.userSessions(userId), this.keys.allSessions());
    const now = this.now();
    const call: (string | number)[] = [keys.length, ...keys, userId, now, randomSeed(), rule, deviceId, admin ? '1' : '0', this.limits.maxSessionsPerUser];
    if (count) call.push(count.instance, descriptorJson(count.device), count.withSnapshot ? '1' : '0');
    // Buffers: the session's header in the count's snapshot is binary (cmsgpack).
    const res = (await this.call(() => this.joinFn.callBufferOrRetry(call))) as unknown[];
    const status = String(res[0]);
    if (status !== 'ok') return status as 'needs_reservation' | 'quota_exceeded';
    return {
      owner: String(res[1]), version: Number(res[2]), epoch: String(res[3]), created: res[4] === 1, lastMutationId: Number(res[5]), refreshed: Number(res[6]),
      connected: count && res.length > 7 ? connectedOf(sessionId, res, 7, count.withSnapshot, now, count.timeoutMs) : undefined,
    };
  }

  async keepAlive(sessionIds: readonly string[]): Promise<void> {
    if (sessionIds.length === 0) return;
    const now = this.now();
    // One pipeline (ioredis splits it per slot on Cluster); most scripts find nothing due.
    const results = await this.call(() => Promise.all(sessionIds.map((id) => {
      const keys = this.keys.sessionKeyList(id);
      return this.r.hfKeepAlive(keys.length, ...keys, now);
    })));
    results.forEach((r, i) => {
      if (r) this.index(sessionIds[i], r[0], Number(r[1]));
    });
  }

  private async liveIds(key: string, limit?: number): Promise<string[]> {
    const now = this.now();
    return this.call(() => (limit ? this.r.zrangebyscore(key, now, '+inf', 'LIMIT', 0, limit) : this.r.zrangebyscore(key, now, '+inf')));
  }

  private async summaries(ids: readonly string[]): Promise<Array<SessionSummary & { recent: number }>> {
    const heads = await this.headers(ids);
    const out: Array<SessionSummary & { recent: number }> = [];
    heads.forEach((raw, i) => {
      if (!raw) return;
      const h = header(raw);
      out.push({ sessionId: ids[i], userId: h[H.UID], version: h[H.V], epoch: h[H.EPOCH], updatedAt: h[H.UPDATED], expiresAt: h[H.EXP], recent: h[H.RECENT] });
    });
    return out;
  }

  async sessionsOfUser(userId: string): Promise<SessionSummary[]> {
    const ids = await this.liveIds(this.keys.userSessions(userId), Math.max(1000, this.limits.maxSessionsPerUser * 2));
    return (await this.summaries(ids)).filter((s) => s.userId === userId).map(({ recent: _r, ...s }) => s);
  }

  async latestSessionOf(userId: string): Promise<string | null> {
    // The index holds at most MAX_SESSIONS_PER_USER live sessions: read them all, pick the newest.
    const ids = await this.liveIds(this.keys.userSessions(userId), Math.max(1000, this.limits.maxSessionsPerUser * 2));
    let best: { id: string; at: number } | null = null;
    for (const s of await this.summaries(ids)) {
      if (s.userId === userId && (!best || s.recent > best.at)) best = { id: s.sessionId, at: s.recent };
    }
    return best?.id ?? null;
  }

  async listSessions(limit: number, cursor: string | null): Promise<Page<SessionSummary>> {
    // Ordered by (expiry, id); the cursor is the last item's pair, so a page costs O(log n + limit).
    const key = this.keys.allSessions();
    const now = this.now();
    const after = parseCursor(cursor);
    const min = after ? Math.max(after.score, now) : now;
    const rows = await this.call(() => this.r.zrangebyscore(key, min, '+inf', 'WITHSCORES', 'LIMIT', 0, limit + 64));
    const ids: Array<{ id: string; score: number }> = [];
    for (let i = 0; i + 1 < rows.length; i += 2) {
      const score = Number(rows[i + 1]);
      if (after && score === after.score && rows[i] <= after.id) continue;
      ids.push({ id: rows[i], score });
    }
    const page = ids.slice(0, limit);
    const items = (await this.summaries(page.map((x) => x.id))).map(({ recent: _r, ...s }) => s);
    const last = page[page.length - 1];
    const more = ids.length > limit || rows.length / 2 === limit + 64;
    return { items, nextCursor: more && last ? `${last.score}:${last.id}` : null };
  }

  async countSessions(): Promise<number> {
    return this.call(() => this.r.zcount(this.keys.allSessions(), this.now(), '+inf'));
  }

  async updatesSince(sessionId: string, afterVersion: number, epoch: string | null): Promise<UpdatesSince | null> {
    const k = this.keys.session(sessionId);
    const res = await this.call(() => this.r.hfUpdatesSinceBuffer(2, k.meta, k.log, afterVersion, epoch ?? ''));
    if (!res) return null;
    return { epoch: res[0].toString('utf8'), frames: res.slice(1) };
  }

  async useRefreshToken(jti: string, family: string, ttlSeconds: number): Promise<RefreshOutcome> {
    return this.call(() => this.r.hfRefreshToken(2, this.keys.refreshUsed(family, jti), this.keys.refreshRevoked(family), ttlSeconds * 1000));
  }

  async createHandoff(h: HandoffRecord): Promise<'ok' | 'quota_exceeded'> {
    const k = this.keys.session(h.sessionId);
    return this.call(() => this.r.hfCreateHandoff(
      2, k.handoffs, this.keys.handoff(h.sessionId, h.token), this.now(), this.limits.maxHandoffsPerSession, h.token, h.expiresAt,
      'src', h.sourceDevice, 'tgt', h.targetDevice, 'v', h.version, 'epoch', h.epoch, 'state', storeValue(JSON.stringify(h.state)),
      'created', h.createdAt, 'exp', h.expiresAt,
    ));
  }

  async consumeHandoff(sessionId: string, token: string): Promise<HandoffOutcome> {
    const res = await this.call(() => this.r.hfConsumeHandoff(2, this.keys.handoff(sessionId, token), this.keys.session(sessionId).handoffs, token));
    if (res === 'not_found') return { status: 'not_found' };
    if (res === 'used') return { status: 'used' };
    const f = flatToRecord(res as string[]);
    return {
      status: 'ok',
      handoff: {
        token, sessionId, sourceDevice: f.src, targetDevice: f.tgt, version: Number(f.v), epoch: f.epoch ?? '',
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
    // Writes held for the window go out now, not after the connection is closed under them.
    if (this.batch.length > 0) this.flush(true);
    clearInterval(this.flusher);
    await this.flushCounters();
  }
}

/** Appends the op's script arguments (see mutate.lua): values in stored form, with their sizes. */
function opArguments(op: StateOp, args: (string | number)[]): void {
  switch (op.op) {
    case 'set': {
      const text = JSON.stringify(op.value);
      args.push(op.key, storeValue(text), byteLength(op.key) + byteLength(text));
      return;
    }
    case 'delete':
      args.push(op.key);
      return;
    case 'incr':
      args.push(op.key, op.delta);
      return;
    default: {
      const obj = op.op === 'replace' ? op.state : op.changes;
      const names = Object.keys(obj);
      args.push(names.length);
      for (const name of names) {
        const text = JSON.stringify(obj[name]);
        args.push(name, storeValue(text), byteLength(name) + byteLength(text));
      }
      if (op.op === 'patch') args.push(...op.deleted);
    }
  }
}

function parseCursor(cursor: string | null): { score: number; id: string } | null {
  if (!cursor) return null;
  const i = cursor.indexOf(':');
  const score = Number(cursor.slice(0, i));
  return i > 0 && Number.isFinite(score) ? { score, id: cursor.slice(i + 1) } : null;
}

function flatToRecord(flat: string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = flat[i + 1];
  return out;
}

function decodeMutation(r: unknown[], h: Header | undefined): MutateReply {
  const result = mutationResult(r, h);
  return { result, refreshedAt: result.status === 'ok' && r[7] === 1 ? result.expiresAt : 0 };
}

function mutationResult(r: unknown[], h: Header | undefined): MutationResult {
  switch (r[0]) {
    case 'ok': {
      if (!h) throw new Error('mutate reply without the session header');
      const valueText = r[4] as string;
      return {
        status: 'ok',
        version: r[1] as number,
        created: r[2] === 1,
        rebased: r[3] === 1,
        value: valueText ? (JSON.parse(valueText) as JsonValue) : undefined,
        duplicate: r[5] === 1,
        updatedAt: h[H.UPDATED],
        createdAt: h[H.CREATED],
        userId: h[H.UID],
        deviceId: h[H.DEV] || null,
        appVersion: h[H.APP] || null,
        state: Array.isArray(r[6]) && r[6].length > 0 ? stateFromFlat(r[6] as string[]) : undefined,
        epoch: h[H.EPOCH],
        expiresAt: Number(h[H.EXP]) || 0,
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
