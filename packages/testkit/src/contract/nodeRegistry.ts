import type { LocalConnection, NodeInfo, NodeRegistry } from '@harmonyflow/gateway';
import { randomBytes, randomUUID } from 'node:crypto';

export interface NodeRegistryHarness {
  /** The registry as two nodes see it (one object for a single-process backend). */
  readonly a: NodeRegistry;
  readonly b: NodeRegistry;
  /**
   * True when processes share the registry (Redis): `claimReap` is then exclusive across them and
   * the claimed instance's next heartbeat reports `reaped`. The memory registry lives in one
   * process, which cannot be reaped by anyone else: there `claimReap` is true while the instance is
   * registered (no second reaper exists to race) and a heartbeat never reports `reaped`.
   */
  readonly shared: boolean;
  close(): Promise<void>;
}

/** Builds the registry with dead-node timeout `deadAfterMs`. */
export type NodeRegistryFactory = (deadAfterMs: number) => Promise<NodeRegistryHarness>;

const DEAD_AFTER_MS = 3000;
const EMPTY = { full: false, added: [], removed: [] } as const;

/**
 * The NodeRegistry contract (cluster/nodeRegistry.ts): liveness by heartbeat age, the connection
 * list kept from full rewrites and deltas and paged with a cursor, the session set, exactly one
 * reaper per dead instance, forget, and what a heartbeat reports (missing, reaped) to an instance
 * paused past the timeout.
 */
export function describeNodeRegistry(name: string, factory: NodeRegistryFactory): void {
  describe(`NodeRegistry contract: ${name}`, () => {
    let h: NodeRegistryHarness;
    let a: NodeRegistry;
    let b: NodeRegistry;
    beforeAll(async () => {
      h = await factory(DEAD_AFTER_MS);
      ({ a, b } = h);
    });
    afterAll(async () => {
      await h.close();
    });

    const instance = (nodeId = `node-${randomBytes(3).toString('hex')}`) => `${nodeId}/${randomBytes(8).toString('hex')}`;
    const info = (inst: string, updatedAt = Date.now(), extra: Record<string, unknown> = {}): NodeInfo => ({
      node_id: inst.split('/')[0], instance: inst, active_connections: 0, sessions: 0,
      started_at: new Date(updatedAt - 1000).toISOString(), updated_at: updatedAt, ...extra,
    });
    const conn = (inst: string, n: number): LocalConnection => ({
      conn_id: `${inst}/${n}`, node_id: inst.split('/')[0], session_id: `s-${n % 7}`, user_id: 'alice', device_id: `d-${n}`,
      subprotocol: 'harmonyflow.v1.json', connected_at: new Date(1_700_000_000_000 + n).toISOString(),
    });
    const conns = (inst: string, from: number, to: number) => Array.from({ length: to - from }, (_, i) => conn(inst, from + i));
    /** Walks the whole list; `between` runs after each page. Returns every item seen, duplicates included. */
    const walk = async (r: NodeRegistry, inst: string, count: number, between?: (page: number) => Promise<void>) => {
      const seen: LocalConnection[] = [];
      let cursor = '0';
      let pages = 0;
      for (;;) {
        const page = await r.connectionsOf(inst, cursor, count);
        seen.push(...page.items);
        pages++;
        if (page.next === null) break;
        expect(pages).toBeLessThan(10_000);
        cursor = page.next;
        await between?.(pages);
      }
      return { seen, pages };
    };
    const ids = (list: LocalConnection[]) => list.map((c) => c.conn_id).sort();
    const listed = async (r: NodeRegistry, inst: string, now: number) => {
      const { live, dead } = await r.list(now);
      return live.some((n) => n.instance === inst) ? 'live' : dead.some((n) => n.instance === inst) ? 'dead' : 'absent';
    };

    it('lists an instance live after its heartbeat, dead once updated_at is older than deadAfterMs', async () => {
      const x = instance();
      const t = Date.now();
      expect(await listed(b, x, t)).toBe('absent');
      await a.heartbeat(info(x, t, { active_connections: 3, sessions: 2, store: 'test' }), EMPTY);
      const { live } = await b.list(t);
      expect(live.find((n) => n.instance === x)).toEqual(info(x, t, { active_connections: 3, sessions: 2, store: 'test' }));
      expect(await listed(b, x, t + DEAD_AFTER_MS)).toBe('live');
      expect(await listed(b, x, t + DEAD_AFTER_MS + 1)).toBe('dead');
      // A later beat brings it back, with the latest info.
      await a.heartbeat(info(x, t + 2 * DEAD_AFTER_MS, { active_connections: 4 }), EMPTY);
      expect(await listed(b, x, t + 2 * DEAD_AFTER_MS + 1)).toBe('live');
      expect((await b.list(t)).live.find((n) => n.instance === x)?.active_connections).toBe(4);
    });

    it('keeps the connection list from full rewrites and deltas', async () => {
      const x = instance();
      const all = async () => ids((await walk(b, x, 100)).seen);
      expect(await b.connectionsOf(x, '0', 10)).toEqual({ items: [], next: null });
      await a.heartbeat(info(x), { full: true, added: conns(x, 0, 3), removed: [] });
      expect(await all()).toEqual(ids(conns(x, 0, 3)));
      expect((await walk(b, x, 100)).seen.find((c) => c.conn_id === `${x}/1`)).toEqual(conn(x, 1));
      await a.heartbeat(info(x), { full: false, added: [conn(x, 3)], removed: [`${x}/1`] });
      expect(await all()).toEqual(ids([conn(x, 0), conn(x, 2), conn(x, 3)]));
      await a.heartbeat(info(x), EMPTY);
      expect(await all()).toEqual(ids([conn(x, 0), conn(x, 2), conn(x, 3)]));
      await a.heartbeat(info(x), { full: true, added: [conn(x, 9)], removed: [] });
      expect(await all()).toEqual([`${x}/9`]);
      await a.heartbeat(info(x), { full: true, added: [], removed: [] });
      expect(await b.connectionsOf(x, '0', 10)).toEqual({ items: [], next: null });
    });

    it('pages through a long connection list: every connection exactly once when nothing changes', async () => {
      const x = instance();
      const y = instance();
      // More than Redis keeps in a compact listpack (512 entries), which HSCAN returns whole.
      const list = conns(x, 0, 1200);
      await a.heartbeat(info(x), { full: true, added: list, removed: [] });
      await a.heartbeat(info(y), { full: true, added: conns(y, 0, 5), removed: [] });
      const { seen, pages } = await walk(b, x, 100);
      expect(pages).toBeGreaterThan(1);
      expect(ids(seen)).toEqual(ids(list));
    });

    it('lists every connection present throughout a walk at least once, while others come and go', async () => {
      const x = instance();
      await a.heartbeat(info(x), { full: true, added: conns(x, 0, 1200), removed: [] });
      const removed = new Set<string>();
      const { seen, pages } = await walk(b, x, 100, async (page) => {
        if (page > 3) return;
        // Drop some already seen and some not yet seen, and add new ones, between pages.
        const drop = [0, 1, 2, 150, 151, 298].map((i) => `${x}/${i + page * 3}`);
        for (const id of drop) removed.add(id);
        await a.heartbeat(info(x), { full: false, added: conns(x, 5000 + page * 50, 5050 + page * 50), removed: drop });
      });
      const seenIds = new Set(seen.map((c) => c.conn_id));
      expect(pages).toBeGreaterThan(4);
      const throughout = conns(x, 0, 1200).map((c) => c.conn_id).filter((id) => !removed.has(id));
      expect(throughout.filter((id) => !seenIds.has(id))).toEqual([]);
    });

    it('tracks the sessions an instance hosts', async () => {
      const [x, y] = [instance(), instance()];
      expect(await b.sessionsOf(x)).toEqual([]);
      const s = Array.from({ length: 5 }, () => randomUUID());
      await a.trackSessions(x, [s[0], s[1], s[2]], []);
      await a.trackSessions(y, [s[0]], []);
      expect((await b.sessionsOf(x)).sort()).toEqual([s[0], s[1], s[2]].sort());
      await a.trackSessions(x, [s[3], s[1]], [s[0]]);
      expect((await b.sessionsOf(x)).sort()).toEqual([s[1], s[2], s[3]].sort());
      await a.trackSessions(x, [], []);
      await a.trackSessions(x, [], [s[4]]);
      expect((await b.sessionsOf(x)).sort()).toEqual([s[1], s[2], s[3]].sort());
      expect(await b.sessionsOf(y)).toEqual([s[0]]);
      await a.trackSessions(x, [], [s[1], s[2], s[3]]);
      expect(await b.sessionsOf(x)).toEqual([]);
    });

    it('forget removes everything of that instance and nothing of another', async () => {
      const nodeId = `node-${randomBytes(3).toString('hex')}`;
      const [x, y] = [instance(nodeId), instance(nodeId)]; // two incarnations of one NODE_ID
      for (const i of [x, y]) {
        await a.heartbeat(info(i), { full: true, added: conns(i, 0, 4), removed: [] });
        await a.trackSessions(i, ['s1', 's2'], []);
      }
      await b.forget(x);
      const now = Date.now();
      expect(await listed(a, x, now)).toBe('absent');
      expect(await a.connectionsOf(x, '0', 10)).toEqual({ items: [], next: null });
      expect(await a.sessionsOf(x)).toEqual([]);
      expect(await listed(a, y, now)).toBe('live');
      expect(ids((await walk(a, y, 10)).seen)).toEqual(ids(conns(y, 0, 4)));
      expect((await a.sessionsOf(y)).sort()).toEqual(['s1', 's2']);
      await b.forget(instance()); // unknown: nothing to do
    });

    it('claimReap: true for exactly one of several concurrent callers (shared), or while registered (one process)', async () => {
      const x = instance();
      await a.heartbeat(info(x, Date.now() - 10 * DEAD_AFTER_MS), EMPTY);
      expect(await listed(b, x, Date.now())).toBe('dead');
      const claims = await Promise.all([a, b, a, b, a, b].map((r) => r.claimReap(x)));
      if (h.shared) {
        expect(claims.filter(Boolean)).toHaveLength(1);
        expect(await a.claimReap(x)).toBe(false);
        expect(await b.claimReap(x)).toBe(false);
      } else {
        expect(claims.every(Boolean)).toBe(true);
        await a.forget(x);
        expect(await a.claimReap(x)).toBe(false);
        expect(await a.claimReap(instance())).toBe(false);
      }
    });

    it('heartbeat reports missing on the first beat and after forget, reaped once after a reap claim (never in one process)', async () => {
      const [x, y] = [instance(), instance()];
      expect(await a.heartbeat(info(x), EMPTY)).toEqual({ missing: true, reaped: false });
      expect(await a.heartbeat(info(x), EMPTY)).toEqual({ missing: false, reaped: false });
      await b.forget(x);
      expect(await a.heartbeat(info(x), EMPTY)).toEqual({ missing: true, reaped: false });
      expect(await a.heartbeat(info(x), EMPTY)).toEqual({ missing: false, reaped: false });
      // Declared dead by another node while alive: the claim comes before the forget.
      await a.heartbeat(info(y), EMPTY);
      expect(await b.claimReap(x)).toBe(true);
      expect(await a.heartbeat(info(x), EMPTY)).toEqual({ missing: false, reaped: h.shared });
      expect(await a.heartbeat(info(x), EMPTY)).toEqual({ missing: false, reaped: false }); // reported once
      expect(await b.claimReap(x)).toBe(true);
      await b.forget(x);
      expect(await a.heartbeat(info(x), EMPTY)).toEqual({ missing: true, reaped: h.shared });
      expect(await a.heartbeat(info(y), EMPTY)).toEqual({ missing: false, reaped: false }); // another instance's claim is not its own
    });
  });
}
