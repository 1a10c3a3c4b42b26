import { BusKind, decodeBusFrame, type UpdateFrame } from '@harmonyflow/protocol';
import type { MutationRequest, SessionStore, StateOp, StoreLimits } from '@harmonyflow/gateway';
import { randomUUID } from 'node:crypto';
import { eventually } from '../eventually';

export interface StoreHarness {
  readonly store: SessionStore;
  /** Collects the bus frames the store publishes for one session, in arrival order. */
  watch(sessionId: string): Promise<UpdateFrame[]>;
  /** The stored form of one state value, for backends that transform it (compression). */
  rawValue?(sessionId: string, key: string): Promise<string | null>;
  close(): Promise<void>;
}

/** A store for the suite; `now` (default Date.now) lets a case move the store's clock. */
export type StoreFactory = (limits: StoreLimits, now?: () => number) => Promise<StoreHarness>;

export const CONTRACT_LIMITS: StoreLimits = {
  ttlSeconds: 3600, maxStateBytes: 64 * 1024, logLength: 20, logMaxBytes: 1024 * 1024,
  maxSessionsPerUser: 0, maxHandoffsPerSession: 0,
};

const alice = { userId: 'alice', admin: false };
const bob = { userId: 'bob', admin: false };
const admin = { userId: 'root', admin: true };

function req(sessionId: string, op: StateOp, extra: Partial<MutationRequest> = {}): MutationRequest {
  return { sessionId, actor: alice, ownerId: extra.actor?.admin ? 'alice' : (extra.actor?.userId ?? 'alice'), op, originNode: 'test-node', ...extra };
}

/**
 * The SessionStore contract: every backend must pass it unchanged. It pins the semantics the
 * HTTP and WS layers rely on (versioning, rebase, strategies, TTL, limits, atomicity, log, bus).
 */
export function describeSessionStore(name: string, factory: StoreFactory): void {
  describe(`SessionStore contract: ${name}`, () => {
    let h: StoreHarness;
    let store: SessionStore;
    beforeAll(async () => {
      h = await factory(CONTRACT_LIMITS);
      store = h.store;
    });
    afterAll(async () => {
      await h.close();
    });
    const sid = () => randomUUID();

    describe('versioning', () => {
      it('creates a session at version 1 and reads it back', async () => {
        const id = sid();
        const r = await store.mutate(req(id, { op: 'replace', state: { mood: 'calm', progress: 75 } }, { expectVersion: 1, deviceId: 'd1', appVersion: '2.1.0' }));
        expect(r).toMatchObject({ status: 'ok', version: 1, created: true, rebased: false, duplicate: false, userId: 'alice', deviceId: 'd1', appVersion: '2.1.0' });
        const snap = await store.get(id);
        expect(snap).toMatchObject({ sessionId: id, userId: 'alice', version: 1, deviceId: 'd1', appVersion: '2.1.0' });
        expect(snap!.state).toEqual({ mood: 'calm', progress: 75 });
        expect(await store.head(id)).toEqual({ userId: 'alice', version: 1, epoch: r.status === 'ok' && r.epoch });
        expect(snap!.epoch).toMatch(/^[A-Za-z0-9_-]{12,}$/);
        // The store's own random bits, whatever the writer calls itself.
        expect(snap!.epoch).not.toContain('test');
      });

      it('reads the heads of many sessions in one call, in the order asked, null where none', async () => {
        const a = sid();
        const b = sid();
        const ra = await store.mutate(req(a, { op: 'set', key: 'k', value: 1 }));
        await store.mutate(req(b, { op: 'set', key: 'k', value: 1 }));
        const rb = await store.mutate(req(b, { op: 'set', key: 'k', value: 2 }));
        if (ra.status !== 'ok' || rb.status !== 'ok') throw new Error('setup writes failed');
        expect(await store.heads([b, sid(), a])).toEqual([
          { userId: 'alice', version: 2, epoch: rb.epoch },
          null,
          { userId: 'alice', version: 1, epoch: ra.epoch },
        ]);
        expect(await store.heads([])).toEqual([]);
      });

      it('gives every session it creates an epoch of its own (SPEC §9)', async () => {
        const epochs = new Set<string>();
        for (let i = 0; i < 20; i++) {
          const r = await store.mutate(req(sid(), { op: 'set', key: 'k', value: i }));
          if (r.status !== 'ok') throw new Error(`write ${i}: ${r.status}`);
          epochs.add(r.epoch);
        }
        expect(epochs.size).toBe(20);
      });

      it('rejects a new session written at a version other than 1 with current 0', async () => {
        const id = sid();
        const r = await store.mutate(req(id, { op: 'replace', state: { a: 1 } }, { expectVersion: 3 }));
        expect(r).toMatchObject({ status: 'conflict', currentVersion: 0 });
        expect(await store.get(id)).toBeNull();
      });

      it('requires expectVersion = current + 1 and returns the server state on conflict', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1 } }, { expectVersion: 1 }));
        const stale = await store.mutate(req(id, { op: 'replace', state: { a: 2 } }, { expectVersion: 1 }));
        expect(stale).toMatchObject({ status: 'conflict', currentVersion: 1, state: { a: 1 } });
        const ok = await store.mutate(req(id, { op: 'replace', state: { a: 2 } }, { expectVersion: 2 }));
        expect(ok).toMatchObject({ status: 'ok', version: 2, created: false });
      });

      it('unconditional writes bump the version by one and replace removes absent keys', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1, b: 2 } }));
        const r = await store.mutate(req(id, { op: 'replace', state: { c: 3 } }));
        expect(r).toMatchObject({ status: 'ok', version: 2 });
        expect((await store.get(id))!.state).toEqual({ c: 3 });
      });

      it('hides another user\'s session (not_found) and lets an admin act on it without taking it over', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1 } }));
        expect(await store.mutate(req(id, { op: 'set', key: 'a', value: 9 }, { actor: bob, ownerId: 'bob' }))).toEqual({ status: 'not_found' });
        expect((await store.get(id))!.state).toEqual({ a: 1 });
        const r = await store.mutate(req(id, { op: 'set', key: 'a', value: 2 }, { actor: admin, ownerId: 'root' }));
        expect(r).toMatchObject({ status: 'ok', version: 2, userId: 'alice' });
        expect((await store.get(id))!.userId).toBe('alice');
      });
    });

    describe('incremental updates and rebase', () => {
      it('applies at the current base without rebasing', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1, b: 1 } }));
        const r = await store.mutate(req(id, { op: 'patch', changes: { a: 2, n: { deep: [1, 2] } }, deleted: ['b'] }, { baseVersion: 1 }));
        expect(r).toMatchObject({ status: 'ok', version: 2, rebased: false });
        expect((await store.get(id))!.state).toEqual({ a: 2, n: { deep: [1, 2] } });
      });

      it('rebases an older base when the touched keys did not change since', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1, b: 1 } }));
        await store.mutate(req(id, { op: 'set', key: 'a', value: 5 }));
        const r = await store.mutate(req(id, { op: 'patch', changes: { b: 7 }, deleted: [] }, { baseVersion: 1 }));
        expect(r).toMatchObject({ status: 'ok', version: 3, rebased: true });
        expect((await store.get(id))!.state).toEqual({ a: 5, b: 7 });
      });

      it('refuses an older base when a touched key changed after it, naming the keys', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1, b: 1 } }));
        await store.mutate(req(id, { op: 'set', key: 'a', value: 5 }));
        await store.mutate(req(id, { op: 'delete', key: 'b' }));
        const r = await store.mutate(req(id, { op: 'patch', changes: { a: 9, c: 1 }, deleted: ['b'] }, { baseVersion: 1 }));
        expect(r).toMatchObject({ status: 'conflict', currentVersion: 3, state: { a: 5 } });
        expect(r.status === 'conflict' && [...r.conflictingKeys!].sort()).toEqual(['a', 'b']);
        expect((await store.head(id))!.version).toBe(3);
      });

      it('treats a base newer than the current version as a conflict', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1 } }));
        expect(await store.mutate(req(id, { op: 'set', key: 'a', value: 2 }, { baseVersion: 5 }))).toMatchObject({ status: 'conflict', currentVersion: 1 });
      });

      it('a whole replacement counts as changing every key it wrote or removed', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1, z: 1 } }));
        await store.mutate(req(id, { op: 'replace', state: { a: 2 } }));
        expect(await store.mutate(req(id, { op: 'set', key: 'z', value: 3 }, { baseVersion: 1 }))).toMatchObject({ status: 'conflict', conflictingKeys: ['z'] });
        expect(await store.mutate(req(id, { op: 'set', key: 'q', value: 3 }, { baseVersion: 1 }))).toMatchObject({ status: 'ok', rebased: true, version: 3 });
      });

      it('SET, DELETE and INCREMENT single keys', async () => {
        const id = sid();
        expect(await store.mutate(req(id, { op: 'set', key: 'm', value: 'calm' }))).toMatchObject({ status: 'ok', version: 1, created: true });
        expect(await store.mutate(req(id, { op: 'incr', key: 'n', delta: 5 }))).toMatchObject({ status: 'ok', version: 2, value: 5 });
        expect(await store.mutate(req(id, { op: 'incr', key: 'n', delta: -2 }))).toMatchObject({ value: 3 });
        expect(await store.mutate(req(id, { op: 'incr', key: 'f', delta: 0.1 }))).toMatchObject({ value: 0.1 });
        expect(await store.mutate(req(id, { op: 'incr', key: 'f', delta: 0.2 }))).toMatchObject({ value: 0.1 + 0.2 });
        expect(await store.mutate(req(id, { op: 'delete', key: 'm' }))).toMatchObject({ version: 6 });
        expect((await store.get(id))!.state).toEqual({ n: 3, f: 0.1 + 0.2 });
      });

      it('writes INCREMENT results as JavaScript writes numbers (same text in every store)', async () => {
        const id = sid();
        const frames = await h.watch(id);
        const cases: Array<[number, number, string]> = [[1.5, 0.1, '1.6'], [0.1, 0.2, '0.30000000000000004'], [2 ** 60, 1, '1152921504606847000'], [0, 1e-7, '1e-7'], [0, 1e21, '1e+21'], [-2, 0.5, '-1.5']];
        for (const [i, [start, delta]] of cases.entries()) {
          await store.mutate(req(id, { op: 'set', key: `n${i}`, value: start }));
          const r = await store.mutate(req(id, { op: 'incr', key: `n${i}`, delta }));
          expect(r).toMatchObject({ status: 'ok', value: start + delta });
        }
        await eventually(() => frames.length === cases.length * 2, 3000);
        expect(frames.filter((f) => f.op === 'incr').map((f) => f.value)).toEqual(cases.map((c) => c[2]));
      });

      it('refuses INCREMENT of a non-number without writing', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'set', key: 's', value: 'text' }));
        expect(await store.mutate(req(id, { op: 'incr', key: 's', delta: 1 }))).toEqual({ status: 'not_a_number', key: 's' });
        await store.mutate(req(id, { op: 'set', key: 'big', value: 1e308 }));
        expect(await store.mutate(req(id, { op: 'incr', key: 'big', delta: 1e308 }))).toEqual({ status: 'not_a_number', key: 'big' });
        expect((await store.head(id))!.version).toBe(2);
      });
    });

    describe('conflict strategies (as store operations)', () => {
      it('merge = server ∪ client, client wins per key, one write', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1, b: 1 } }));
        const r = await store.mutate(req(id, { op: 'merge', changes: { b: 2, c: 3 } }));
        expect(r).toMatchObject({ status: 'ok', version: 2 });
        expect(r.status === 'ok' && r.state).toEqual({ a: 1, b: 2, c: 3 });
        expect((await store.get(id))!.state).toEqual({ a: 1, b: 2, c: 3 });
      });

      it('client_wins = replace at current+1', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1, b: 1 } }));
        expect(await store.mutate(req(id, { op: 'replace', state: { b: 9 } }))).toMatchObject({ version: 2 });
        expect((await store.get(id))!.state).toEqual({ b: 9 });
      });
    });

    describe('limits and hostile data', () => {
      it('refuses a state above maxStateBytes and writes nothing', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 1 } }));
        const big = 'x'.repeat(CONTRACT_LIMITS.maxStateBytes);
        expect(await store.mutate(req(id, { op: 'replace', state: { big } }))).toMatchObject({ status: 'too_large' });
        const half = 'y'.repeat(CONTRACT_LIMITS.maxStateBytes / 2);
        expect(await store.mutate(req(id, { op: 'set', key: 'h1', value: half }))).toMatchObject({ status: 'ok', version: 2 });
        expect(await store.mutate(req(id, { op: 'patch', changes: { h2: half }, deleted: [] }))).toMatchObject({ status: 'too_large' });
        // Overwriting a key frees its old size: replacing h1 with a same-size value fits.
        expect(await store.mutate(req(id, { op: 'set', key: 'h1', value: half.replace(/y/g, 'z') }))).toMatchObject({ status: 'ok', version: 3 });
        expect(await store.mutate(req(id, { op: 'delete', key: 'h1' }))).toMatchObject({ status: 'ok', version: 4 });
        expect(await store.mutate(req(id, { op: 'set', key: 'h2', value: half }))).toMatchObject({ status: 'ok', version: 5 });
        expect(Object.keys((await store.get(id))!.state).sort()).toEqual(['a', 'h2']);
      });

      it('stores __proto__ and constructor keys as plain data', async () => {
        const id = sid();
        const state = JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}},"ok":1}');
        await store.mutate(req(id, { op: 'replace', state }));
        await store.mutate(req(id, { op: 'patch', changes: JSON.parse('{"__proto__":{"polluted":2}}'), deleted: [] }));
        const snap = await store.get(id);
        expect(JSON.parse(JSON.stringify(snap!.state))).toEqual(JSON.parse('{"__proto__":{"polluted":2},"constructor":{"prototype":{"x":1}},"ok":1}'));
        expect(Object.prototype.hasOwnProperty.call(snap!.state, '__proto__')).toBe(true);
        expect((snap!.state as Record<string, unknown>)['__proto__']).toEqual({ polluted: 2 });
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      });

      it('round-trips large (compressed) values transparently', async () => {
        const id = sid();
        const big = { items: Array.from({ length: 400 }, (_, i) => ({ i, note: 'breathe in, breathe out' })) };
        await store.mutate(req(id, { op: 'replace', state: { big, small: 1 } }));
        await store.mutate(req(id, { op: 'set', key: 'big2', value: big }));
        const snap = await store.get(id);
        expect(snap!.state).toEqual({ big, small: 1, big2: big });
        if (h.rawValue) {
          const raw = await h.rawValue(id, 'big');
          expect(raw!.length).toBeLessThan(JSON.stringify(big).length / 4);
          expect(await h.rawValue(id, 'small')).toBe('1');
        }
      });
    });

    describe('TTL', () => {
      it('reports an expiry between one TTL and 9/8 of it after the last write', async () => {
        const id = sid();
        const before = Date.now();
        const r = await store.mutate(req(id, { op: 'set', key: 'a', value: 1 }));
        const snap = await store.get(id);
        const ttl = CONTRACT_LIMITS.ttlSeconds * 1000;
        expect(snap!.expiresAt).toBeGreaterThanOrEqual(before + ttl);
        expect(snap!.expiresAt).toBeLessThanOrEqual(Date.now() + ttl + ttl / 8);
        expect(r.status === 'ok' && r.expiresAt).toBe(snap!.expiresAt);
      });

      it('forgets a session after its TTL, and a write slides the TTL', async () => {
        const short = await factory({ ...CONTRACT_LIMITS, ttlSeconds: 1 });
        try {
          const id = sid();
          await short.store.mutate(req(id, { op: 'set', key: 'a', value: 1 }));
          await new Promise((r) => setTimeout(r, 600));
          await short.store.mutate(req(id, { op: 'set', key: 'a', value: 2 }));
          await new Promise((r) => setTimeout(r, 600));
          expect((await short.store.get(id))!.state).toEqual({ a: 2 });
          const epoch = (await short.store.head(id))!.epoch;
          await eventually(async () => (await short.store.get(id)) === null, 5000);
          expect(await short.store.head(id)).toBeNull();
          // Recreated after expiry: versions start over in a new epoch, the old log does not interfere.
          const again = await short.store.mutate(req(id, { op: 'set', key: 'b', value: 1 }));
          expect(again).toMatchObject({ status: 'ok', version: 1, created: true });
          expect(again.status === 'ok' && again.epoch).not.toBe(epoch);
          expect(await short.store.updatesSince(id, 0, epoch)).toBeNull();
          expect((await short.store.updatesSince(id, 0, null))!.frames).toHaveLength(1);
          expect((await short.store.get(id))!.state).toEqual({ b: 1 });
        } finally {
          await short.close();
        }
      });
    });

    describe('expiry while devices are connected', () => {
      it('keepAlive keeps an idle session (every key of it) alive past its TTL; without it, it expires', async () => {
        const short = await factory({ ...CONTRACT_LIMITS, ttlSeconds: 1 });
        try {
          const kept = sid();
          const idle = sid();
          for (const id of [kept, idle]) {
            await short.store.mutate(req(id, { op: 'set', key: 'a', value: 1 }, { deviceId: 'd', mutationId: 1 }));
            await short.store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }));
          }
          const epoch = (await short.store.head(kept))!.epoch;
          const until = Date.now() + 2500;
          while (Date.now() < until) {
            await short.store.keepAlive([kept]);
            await new Promise((r) => setTimeout(r, 100));
          }
          expect(await short.store.head(idle)).toBeNull();
          const snap = await short.store.get(kept);
          expect(snap).toMatchObject({ version: 2, epoch, state: { a: 1, n: 1 } });
          expect((await short.store.updatesSince(kept, 0, epoch))!.frames).toHaveLength(2);
          expect(await short.store.claim(kept, 'alice', 'd')).toMatchObject({ status: 'ok', lastMutationId: 1, epoch });
          expect(await short.store.mutate(req(kept, { op: 'incr', key: 'n', delta: 1 }))).toMatchObject({ status: 'ok', version: 3, epoch });
        } finally {
          await short.close();
        }
      });
    });

    describe('atomicity under concurrency', () => {
      it('20 parallel writers x 50 increments end at exactly 1000, version 1000', async () => {
        const id = sid();
        const writers = Array.from({ length: 20 }, async () => {
          for (let i = 0; i < 50; i++) {
            const r = await store.mutate(req(id, { op: 'incr', key: 'count', delta: 1 }));
            if (r.status !== 'ok') throw new Error(`unexpected ${r.status}`);
          }
        });
        await Promise.all(writers);
        const snap = await store.get(id);
        expect(snap!.state.count).toBe(1000);
        expect(snap!.version).toBe(1000);
      });

      it('parallel conditional writers: exactly one wins each version', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'replace', state: { a: 0 } }));
        const results = await Promise.all(Array.from({ length: 10 }, (_, i) => store.mutate(req(id, { op: 'replace', state: { a: i } }, { expectVersion: 2 }))));
        expect(results.filter((r) => r.status === 'ok')).toHaveLength(1);
        expect(results.filter((r) => r.status === 'conflict')).toHaveLength(9);
      });
    });

    describe('idempotent retries', () => {
      it('acknowledges a retried (device, correlation id) again but applies it once', async () => {
        const id = sid();
        const first = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'phone', correlationId: 'c-1' }));
        const again = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'phone', correlationId: 'c-1' }));
        expect(first).toMatchObject({ status: 'ok', version: 1, value: 1, duplicate: false });
        expect(again).toMatchObject({ status: 'ok', version: 1, value: 1, duplicate: true });
        const other = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'tablet', correlationId: 'c-1' }));
        expect(other).toMatchObject({ version: 2, value: 2, duplicate: false });
        expect((await store.get(id))!.state).toEqual({ n: 2 });
      });

      it('counts a correlation id as a retry for 5 minutes; after that the id may name a new write', async () => {
        let offset = 0;
        const clocked = await factory(CONTRACT_LIMITS, () => Date.now() + offset);
        try {
          const id = sid();
          const w = () => clocked.store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'app', correlationId: 'c0' }));
          expect(await w()).toMatchObject({ version: 1, duplicate: false });
          offset = 299_000;
          expect(await w()).toMatchObject({ version: 1, value: 1, duplicate: true });
          offset = 301_000;
          // A client that restarted its counter: c0 is a new write now, not a retry.
          expect(await w()).toMatchObject({ version: 2, value: 2, duplicate: false });
          expect(await w()).toMatchObject({ version: 2, duplicate: true });
        } finally {
          await clocked.close();
        }
      });

      it('remembers the correlation ids of at least the session\'s last 64 writes, and a bounded number', async () => {
        const id = sid();
        const w = (corr: string) => store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'app', correlationId: corr }));
        for (let i = 1; i <= 200; i++) expect(await w(`c${i}`)).toMatchObject({ version: i, duplicate: false });
        for (let i = 137; i <= 200; i++) expect(await w(`c${i}`)).toMatchObject({ version: i, value: i, duplicate: true });
        // Records live in generations of 64, at most two: write 128 dropped 1..64 and write 192
        // dropped 65..128, so 129..200 stay (never fewer than the newest 64, never 128 or more).
        expect(await w('c128')).toMatchObject({ version: 201, duplicate: false });
        expect(await w('c129')).toMatchObject({ version: 129, duplicate: true });
      });

      it('an id reused after its window has one record, its new one', async () => {
        let offset = 0;
        const clocked = await factory(CONTRACT_LIMITS, () => Date.now() + offset);
        try {
          const id = sid();
          const w = (corr: string) => clocked.store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'app', correlationId: corr }));
          for (let i = 1; i <= 64; i++) await w(`old${i}`);
          offset = 301_000;
          // old1's record is stale: a new write, recorded anew.
          expect(await w('old1')).toMatchObject({ version: 65, duplicate: false });
          // 63 more fill that generation and drop the one holding the stale record; the new one answers.
          for (let i = 1; i <= 63; i++) await w(`new${i}`);
          expect(await w('old1')).toMatchObject({ version: 65, value: 65, duplicate: true });
          // 64 more fill the next generation and drop old1's new record with its own.
          for (let i = 64; i <= 127; i++) await w(`new${i}`);
          expect(await w('new64')).toMatchObject({ version: 129, duplicate: true });
          expect(await w('old1')).toMatchObject({ version: 193, duplicate: false });
          expect(await w('old1')).toMatchObject({ version: 193, duplicate: true });
        } finally {
          await clocked.close();
        }
      });

      it('keeps writes apart whatever characters their device and correlation ids contain', async () => {
        const id = sid();
        const a = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'tab:1', correlationId: 'x' }));
        const b = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'tab', correlationId: '1:x' }));
        const c = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'tab\u00001', correlationId: 'x' }));
        const d = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'tab', correlationId: '\u00001x' }));
        expect([a, b, c, d].map((r) => r.status === 'ok' && r.duplicate)).toEqual([false, false, false, false]);
        expect((await store.get(id))!.state).toEqual({ n: 4 });
      });
    });

    describe('mutation ids (SPEC §10)', () => {
      it('applies each mutation id of a device once, answering later copies with the current version', async () => {
        const id = sid();
        const m1 = await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'phone', mutationId: 1, correlationId: 'a' }));
        expect(m1).toMatchObject({ status: 'ok', version: 1, duplicate: false });
        await store.mutate(req(id, { op: 'set', key: 'o', value: 1 }, { deviceId: 'tablet' }));
        // Same id, new correlation id (the correlation window is long gone): not applied again.
        expect(await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'phone', mutationId: 1, correlationId: 'b' })))
          .toMatchObject({ status: 'ok', version: 2, duplicate: true });
        // Lower ids are duplicates too; higher ones apply; other devices have their own sequence.
        expect(await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'phone', mutationId: 5 }))).toMatchObject({ version: 3, duplicate: false });
        expect(await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'phone', mutationId: 4 }))).toMatchObject({ version: 3, duplicate: true });
        expect(await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }, { deviceId: 'tablet', mutationId: 1 }))).toMatchObject({ version: 4, duplicate: false });
        expect((await store.get(id))!.state).toEqual({ n: 3, o: 1 });
        expect(await store.claim(id, 'alice', 'phone')).toMatchObject({ status: 'ok', lastMutationId: 5 });
        expect(await store.claim(id, 'alice', 'tablet')).toMatchObject({ status: 'ok', lastMutationId: 1 });
        expect(await store.claim(id, 'alice', 'web')).toMatchObject({ status: 'ok', lastMutationId: 0 });
      });

      it('counts a refusal a retry would repeat as processed', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'set', key: 's', value: 'text' }));
        expect(await store.mutate(req(id, { op: 'incr', key: 's', delta: 1 }, { deviceId: 'phone', mutationId: 1 }))).toMatchObject({ status: 'not_a_number' });
        expect(await store.mutate(req(id, { op: 'set', key: 'a', value: 1 }, { deviceId: 'phone', mutationId: 2, baseVersion: 9 }))).toMatchObject({ status: 'conflict' });
        expect(await store.mutate(req(id, { op: 'set', key: 'a', value: 1 }, { deviceId: 'phone', mutationId: 2 }))).toMatchObject({ status: 'ok', duplicate: true, version: 1 });
        expect(await store.claim(id, 'alice', 'phone')).toMatchObject({ lastMutationId: 2 });
        expect((await store.get(id))!.state).toEqual({ s: 'text' });
      });
    });

    describe('bounded storage', () => {
      it('deleting keys that never existed leaves no tombstone (no conflict for an older base)', async () => {
        const id = sid();
        await store.mutate(req(id, { op: 'set', key: 'a', value: 1 }));
        await store.mutate(req(id, { op: 'delete', key: 'ghost' }));
        await store.mutate(req(id, { op: 'patch', changes: {}, deleted: ['ghost2', 'ghost3'] }));
        expect(await store.mutate(req(id, { op: 'set', key: 'ghost', value: 1 }, { baseVersion: 1 }))).toMatchObject({ status: 'ok', rebased: true });
        expect((await store.get(id))!.state).toEqual({ a: 1, ghost: 1 });
      });

      it('bounds tombstones: past the cap, deletions before a floor conflict conservatively', async () => {
        const id = sid();
        const keys = Array.from({ length: 1100 }, (_, i) => `k${i}`);
        await store.mutate(req(id, { op: 'patch', changes: Object.fromEntries(keys.map((k) => [k, 1])), deleted: [] }));
        await store.mutate(req(id, { op: 'set', key: 'x', value: 1 }));
        await store.mutate(req(id, { op: 'patch', changes: {}, deleted: keys })); // v3
        expect((await store.get(id))!.state).toEqual({ x: 1 });
        // Deleted after base 2: conflict, as with a tombstone; a key written before the floor is still exact.
        expect(await store.mutate(req(id, { op: 'set', key: 'k7', value: 2 }, { baseVersion: 2 }))).toMatchObject({ status: 'conflict', conflictingKeys: ['k7'] });
        expect(await store.mutate(req(id, { op: 'set', key: 'x', value: 2 }, { baseVersion: 2 }))).toMatchObject({ status: 'ok', rebased: true });
      });

      it('caps the update log by bytes as well as entries; resume falls back to a snapshot past it', async () => {
        const small = await factory({ ...CONTRACT_LIMITS, logLength: 1000, logMaxBytes: 8 * 1024 });
        try {
          const id = sid();
          const big = 'z'.repeat(1000);
          for (let i = 0; i < 30; i++) await small.store.mutate(req(id, { op: 'set', key: `k${i}`, value: big }));
          const epoch = (await small.store.head(id))!.epoch;
          expect(await small.store.updatesSince(id, 5, epoch)).toBeNull();
          const recent = await small.store.updatesSince(id, 25, epoch);
          expect(recent!.frames.map((b) => (decodeBusFrame(b) as UpdateFrame).version)).toEqual([26, 27, 28, 29, 30]);
          // Both stores trim alike: past the cap, back to 7/8 of it, so exactly these entries stay.
          let oldest = 0;
          while ((await small.store.updatesSince(id, oldest, epoch)) === null) oldest++;
          expect(oldest + 1).toBe(25); // 6 frames of ~1.1 KiB: within 7/8 of 8 KiB, where 7 would not be
          // One huge frame alone past the cap still keeps the newest entry.
          await small.store.mutate(req(id, { op: 'set', key: 'huge', value: 'h'.repeat(12 * 1024) }));
          expect((await small.store.updatesSince(id, 30, epoch))!.frames).toHaveLength(1);
        } finally {
          await small.close();
        }
      });
    });

    describe('quotas', () => {
      it('refuses a user\'s session beyond maxSessionsPerUser (write or claim), others unaffected', async () => {
        const q = await factory({ ...CONTRACT_LIMITS, maxSessionsPerUser: 3 });
        try {
          const user = `q-${randomUUID()}`;
          const actor = { userId: user, admin: false };
          const ids = [sid(), sid(), sid()];
          await q.store.mutate(req(ids[0], { op: 'set', key: 'a', value: 1 }, { actor, ownerId: user }));
          await q.store.mutate(req(ids[1], { op: 'set', key: 'a', value: 1 }, { actor, ownerId: user }));
          expect(await q.store.claim(ids[2], user)).toMatchObject({ status: 'ok', created: true });
          expect(await q.store.mutate(req(sid(), { op: 'set', key: 'a', value: 1 }, { actor, ownerId: user }))).toEqual({ status: 'quota_exceeded' });
          expect(await q.store.claim(sid(), user)).toEqual({ status: 'quota_exceeded' });
          // Existing sessions stay writable and claimable; another user is not affected.
          expect(await q.store.mutate(req(ids[2], { op: 'set', key: 'a', value: 1 }, { actor, ownerId: user }))).toMatchObject({ status: 'ok', version: 1 });
          expect(await q.store.claim(ids[0], user)).toMatchObject({ status: 'ok', created: false });
          expect(await q.store.claim(sid(), `other-${user}`)).toMatchObject({ status: 'ok', created: true });
          expect((await q.store.sessionsOfUser(user)).map((x) => x.sessionId).sort()).toEqual([...ids].sort());
        } finally {
          await q.close();
        }
      });

      it('refuses handoff tokens beyond maxHandoffsPerSession; a used one frees its place', async () => {
        const q = await factory({ ...CONTRACT_LIMITS, maxHandoffsPerSession: 2 });
        try {
          const id = sid();
          const h = (token: string) => ({ token, sessionId: id, sourceDevice: 'a', targetDevice: 'b', version: 0, epoch: 'e', state: {}, createdAt: Date.now(), expiresAt: Date.now() + 60_000 });
          expect(await q.store.createHandoff(h('t1'))).toBe('ok');
          expect(await q.store.createHandoff(h('t2'))).toBe('ok');
          expect(await q.store.createHandoff(h('t3'))).toBe('quota_exceeded');
          expect(await q.store.consumeHandoff(id, 't3')).toEqual({ status: 'not_found' });
          expect(await q.store.consumeHandoff(id, 't1')).toMatchObject({ status: 'ok' });
          expect(await q.store.createHandoff(h('t3'))).toBe('ok');
          // A used token still answers 'used' (410), whatever was created since.
          expect(await q.store.consumeHandoff(id, 't1')).toEqual({ status: 'used' });
        } finally {
          await q.close();
        }
      });

      it('counts live items only: an expired session and an expired handoff token free their places', async () => {
        const q = await factory({ ...CONTRACT_LIMITS, ttlSeconds: 1, maxSessionsPerUser: 1, maxHandoffsPerSession: 1 });
        try {
          const user = `q-${randomUUID()}`;
          const actor = { userId: user, admin: false };
          const first = sid();
          await q.store.mutate(req(first, { op: 'set', key: 'a', value: 1 }, { actor, ownerId: user }));
          expect(await q.store.claim(sid(), user)).toEqual({ status: 'quota_exceeded' });
          const other = sid();
          await q.store.mutate(req(other, { op: 'set', key: 'a', value: 1 }));
          const h = (token: string, ttl: number) => ({ token, sessionId: other, sourceDevice: 'a', targetDevice: 'b', version: 1, epoch: 'e', state: {}, createdAt: Date.now(), expiresAt: Date.now() + ttl });
          expect(await q.store.createHandoff(h('short', 300))).toBe('ok');
          expect(await q.store.createHandoff(h('next', 60_000))).toBe('quota_exceeded');
          await eventually(async () => (await q.store.createHandoff(h('next', 60_000))) === 'ok', 3000, 100);
          await eventually(async () => (await q.store.get(first)) === null, 5000, 100);
          expect(await q.store.claim(sid(), user)).toMatchObject({ status: 'ok', created: true });
        } finally {
          await q.close();
        }
      });
    });

    describe('update log and bus frames', () => {
      it('publishes one frame per committed change, in version order, with the change', async () => {
        const id = sid();
        const frames = await h.watch(id);
        await store.mutate(req(id, { op: 'set', key: 'a', value: { x: 1 } }, { deviceId: 'd1', correlationId: 'k1', originConn: 7 }));
        await store.mutate(req(id, { op: 'incr', key: 'n', delta: 2 }));
        await store.mutate(req(id, { op: 'patch', changes: { b: true }, deleted: ['a'] }));
        await store.mutate(req(id, { op: 'replace', state: { z: 'end' } }));
        await store.mutate(req(id, { op: 'replace', state: { q: 1 } }, { expectVersion: 1 })); // conflict: no frame
        await eventually(() => frames.length === 4, 3000);
        expect(frames.map((f) => f.version)).toEqual([1, 2, 3, 4]);
        expect(frames[0]).toMatchObject({ kind: BusKind.UPDATE, sessionId: id, op: 'set', key: 'a', value: '{"x":1}', deviceId: 'd1', correlationId: 'k1', originConn: 7, originNode: 'test-node' });
        expect(frames[1]).toMatchObject({ op: 'incr', key: 'n', value: '2', delta: 2 });
        expect(frames[2]).toMatchObject({ op: 'patch', fields: ['b', 'true'], deleted: ['a'] });
        expect(frames[3]).toMatchObject({ op: 'replace', fields: ['z', '"end"'] });
      });

      it('replays exactly the updates after a version while the log covers them', async () => {
        const id = sid();
        for (let i = 0; i < 30; i++) await store.mutate(req(id, { op: 'incr', key: 'n', delta: 1 }));
        const epoch = (await store.head(id))!.epoch;
        const after25 = await store.updatesSince(id, 25, epoch);
        expect(after25!.epoch).toBe(epoch);
        expect(after25!.frames.map((b) => (decodeBusFrame(b) as UpdateFrame).version)).toEqual([26, 27, 28, 29, 30]);
        expect(after25!.frames.map((b) => (decodeBusFrame(b) as UpdateFrame).epoch)).toEqual(Array(5).fill(epoch));
        expect(await store.updatesSince(id, 30, epoch)).toEqual({ epoch, frames: [] });
        const anyEpoch = await store.updatesSince(id, 25, null);
        expect(anyEpoch!.frames.map((b) => (decodeBusFrame(b) as UpdateFrame).version)).toEqual([26, 27, 28, 29, 30]);
        expect(await store.updatesSince(id, 25, 'another-epoch')).toBeNull();
        expect(await store.updatesSince(id, 2, epoch)).toBeNull(); // the log keeps ~20 here
        expect(await store.updatesSince(id, 31, epoch)).toBeNull();
        expect(await store.updatesSince(sid(), 0, null)).toBeNull();
      });
    });

    describe('sessions of a user', () => {
      it('a claim by someone who may not join changes nothing (no expiry refresh), an admin\'s does', async () => {
        let offset = 0;
        const ttl = CONTRACT_LIMITS.ttlSeconds * 1000;
        const clocked = await factory(CONTRACT_LIMITS, () => Date.now() + offset);
        try {
          const id = sid();
          await clocked.store.mutate(req(id, { op: 'set', key: 'a', value: 1 }));
          const exp = (await clocked.store.get(id))!.expiresAt;
          offset = Math.ceil(ttl / 8) + 1000; // a refresh is due now
          expect(await clocked.store.claim(id, 'dave', 'd')).toMatchObject({ status: 'ok', userId: 'alice', lastMutationId: 0 });
          expect((await clocked.store.get(id))!.expiresAt).toBe(exp);
          expect(await clocked.store.claim(id, 'root', 'console', true)).toMatchObject({ status: 'ok', userId: 'alice' });
          expect((await clocked.store.get(id))!.expiresAt).toBeGreaterThan(exp);
        } finally {
          await clocked.close();
        }
      });

      it('a claim that creates or refreshes a session keeps it listed until its new expiry', async () => {
        let offset = 0;
        const ttl = CONTRACT_LIMITS.ttlSeconds * 1000;
        const clocked = await factory(CONTRACT_LIMITS, () => Date.now() + offset);
        try {
          const [user, other] = [`u-${randomUUID()}`, `u-${randomUUID()}`];
          const [mine, theirs] = [sid(), sid()];
          expect(await clocked.store.claim(mine, user, 'd')).toMatchObject({ status: 'ok', created: true });
          expect(await clocked.store.claim(theirs, other, 'd')).toMatchObject({ status: 'ok', created: true });
          const listedFor = async (u: string) => (await clocked.store.sessionsOfUser(u)).map((s) => s.sessionId);
          const listedAll = async () => {
            const seen: string[] = [];
            let cursor: string | null = null;
            do {
              const page: Awaited<ReturnType<SessionStore['listSessions']>> = await clocked.store.listSessions(500, cursor);
              seen.push(...page.items.map((i) => i.sessionId));
              cursor = page.nextCursor;
            } while (cursor);
            return seen;
          };
          expect(await listedFor(user)).toEqual([mine]);
          expect(await listedAll()).toEqual(expect.arrayContaining([mine, theirs]));
          const exp = (await clocked.store.get(mine))!.expiresAt;
          offset = Math.ceil(ttl / 8) + 1000; // a refresh is due: by the owner, and by an admin
          expect(await clocked.store.claim(mine, user, 'd')).toMatchObject({ status: 'ok', created: false });
          expect(await clocked.store.claim(theirs, 'root', 'console', true)).toMatchObject({ status: 'ok', userId: other });
          // Past the first expiry, only index entries that moved with the sessions still list them.
          offset = exp - Date.now() + 1000;
          expect(await listedFor(user)).toEqual([mine]);
          expect(await listedFor(other)).toEqual([theirs]);
          expect(await listedAll()).toEqual(expect.arrayContaining([mine, theirs]));
        } finally {
          await clocked.close();
        }
      });

      it('a read issued after a write sees it, even before the write was awaited', async () => {
        const id = sid();
        const writes = [store.mutate(req(id, { op: 'set', key: 'a', value: 1 })), store.mutate(req(id, { op: 'set', key: 'b', value: 2 }))];
        const [snap, head] = await Promise.all([store.get(id), store.head(id)]);
        await Promise.all(writes);
        expect(snap).toMatchObject({ version: 2, state: { a: 1, b: 2 } });
        expect(head).toMatchObject({ version: 2 });
      });

      it('is behind by no more than its oldest unanswered command, and by nothing once everything it sent is answered', async () => {
        const id = sid();
        // Earlier cases' own index updates may still be out; they would count from before `sent`.
        await eventually(() => store.backlogMs(performance.now()) === 0, 2000, 10);
        const sent = performance.now();
        const calls: Promise<unknown>[] = [];
        for (let i = 0; i < 20; i++) calls.push(store.mutate(req(id, { op: 'set', key: `k${i}`, value: i })));
        calls.push(store.mutate(req(id, { op: 'incr', key: 'k0', delta: 'x' as unknown as number })).catch(() => undefined));
        calls.push(store.get(id), store.heads([id, sid()]));
        await new Promise((r) => setImmediate(r)); // the turn's commands are out, no reply read yet
        const now = performance.now();
        const behind = store.backlogMs(now);
        expect(behind).toBeLessThanOrEqual(now - sent);
        // A store that answers in-process is never behind; one across a connection is, from its send.
        if (store.kind === 'memory') expect(behind).toBe(0);
        else expect(behind).toBeGreaterThan(0);
        await Promise.all(calls);
        // (What the store sends on its own after a write, index updates, is answered soon after.)
        await eventually(() => store.backlogMs(performance.now()) === 0, 2000, 10);
      });

      it('claims an unknown session at version 0 for its first user only', async () => {
        const id = sid();
        const first = await store.claim(id, 'carol', 'phone');
        expect(first).toMatchObject({ status: 'ok', userId: 'carol', version: 0, created: true, lastMutationId: 0 });
        const epoch = first.status === 'ok' ? first.epoch : '';
        expect(await store.claim(id, 'dave')).toEqual({ status: 'ok', userId: 'carol', version: 0, epoch, created: false, lastMutationId: 0 });
        expect(await store.mutate(req(id, { op: 'set', key: 'a', value: 1 }, { actor: { userId: 'dave', admin: false }, ownerId: 'dave' }))).toEqual({ status: 'not_found' });
        expect(await store.mutate(req(id, { op: 'replace', state: { a: 1 } }, { actor: { userId: 'carol', admin: false }, ownerId: 'carol', expectVersion: 1 }))).toMatchObject({ status: 'ok', version: 1, created: true });
      });

      it('knows the user\'s most recent session', async () => {
        const user = `u-${randomUUID()}`;
        const actor = { userId: user, admin: false };
        expect(await store.latestSessionOf(user)).toBeNull();
        const a = sid();
        const b = sid();
        await store.mutate(req(a, { op: 'set', key: 'x', value: 1 }, { actor, ownerId: user }));
        await new Promise((r) => setTimeout(r, 5));
        await store.mutate(req(b, { op: 'set', key: 'x', value: 1 }, { actor, ownerId: user }));
        expect(await store.latestSessionOf(user)).toBe(b);
        await new Promise((r) => setTimeout(r, 5));
        await store.mutate(req(a, { op: 'set', key: 'x', value: 2 }, { actor, ownerId: user }));
        expect(await store.latestSessionOf(user)).toBe(a);
        await new Promise((r) => setTimeout(r, 5));
        const c = sid();
        await store.claim(c, user);
        expect(await store.latestSessionOf(user)).toBe(c);
      });

      it('lists sessions in pages and counts them', async () => {
        const before = await store.countSessions();
        const ids = [sid(), sid(), sid()];
        for (const id of ids) await store.mutate(req(id, { op: 'set', key: 'a', value: 1 }));
        expect(await store.countSessions()).toBe(before + 3);
        const seen: string[] = [];
        let cursor: string | null = null;
        do {
          const page: Awaited<ReturnType<SessionStore['listSessions']>> = await store.listSessions(7, cursor);
          expect(page.items.length).toBeLessThanOrEqual(7);
          seen.push(...page.items.map((i) => i.sessionId));
          cursor = page.nextCursor;
        } while (cursor);
        for (const id of ids) expect(seen).toContain(id);
        expect(new Set(seen).size).toBe(seen.length);
      });
    });

    describe('refresh tokens and handoffs', () => {
      it('records refresh token use and revokes the family on reuse', async () => {
        const fam = randomUUID();
        expect(await store.useRefreshToken('j1', fam, 60)).toBe('ok');
        expect(await store.useRefreshToken('j2', fam, 60)).toBe('ok');
        expect(await store.useRefreshToken('j1', fam, 60)).toBe('reused');
        expect(await store.useRefreshToken('j3', fam, 60)).toBe('revoked');
        expect(await store.useRefreshToken('j1', randomUUID(), 60)).toBe('ok');
      });

      it('consumes a handoff token exactly once', async () => {
        const id = sid();
        const token = randomUUID();
        expect(await store.createHandoff({ token, sessionId: id, sourceDevice: 'phone', targetDevice: 'tablet', version: 4, epoch: 'e1', state: { a: 1 }, createdAt: Date.now(), expiresAt: Date.now() + 60_000 })).toBe('ok');
        const results = await Promise.all([store.consumeHandoff(id, token), store.consumeHandoff(id, token), store.consumeHandoff(id, token)]);
        expect(results.filter((r) => r.status === 'ok')).toHaveLength(1);
        expect(results.filter((r) => r.status === 'used')).toHaveLength(2);
        expect(results.find((r) => r.status === 'ok')).toMatchObject({ handoff: { sourceDevice: 'phone', targetDevice: 'tablet', version: 4, epoch: 'e1', state: { a: 1 } } });
        expect(await store.consumeHandoff(id, 'nope')).toEqual({ status: 'not_found' });
        expect(await store.consumeHandoff(sid(), token)).toEqual({ status: 'not_found' });
      });

      it('forgets an expired handoff token', async () => {
        const id = sid();
        await store.createHandoff({ token: 't', sessionId: id, sourceDevice: 'a', targetDevice: 'b', version: 0, epoch: 'e', state: {}, createdAt: Date.now(), expiresAt: Date.now() + 150 });
        await eventually(async () => (await store.consumeHandoff(id, 't')).status === 'not_found', 3000);
      });
    });

    it('counts writes and reads', async () => {
      const before = await store.counters();
      store.incrCounter('writes', 3);
      store.incrCounter('reads');
      await eventually(async () => {
        const c = await store.counters();
        return c.writes === before.writes + 3 && c.reads === before.reads + 1;
      }, 3000);
    });

    it('answers ping', async () => {
      expect(await store.ping()).toBe(true);
    });
  });
}
