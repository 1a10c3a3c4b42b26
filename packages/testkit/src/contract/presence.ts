import type { DeviceDescriptor, PresenceRegistry, SessionStore } from '@harmonyflow/gateway';
import { randomUUID } from 'node:crypto';
import { eventually, sleep } from '../eventually';

export interface PresenceHarness {
  readonly presence: PresenceRegistry;
  /** A store whose sessions the registry's records live and die with, wired as `node.ts` wires them. */
  readonly store: SessionStore;
  /** The registry returns the session with a count that asks for it (it lives beside the session's data). */
  readonly readsSnapshots?: boolean;
  /** Remaining lifetime (ms, PTTL) of a session's device records, for backends that expire keys. */
  devicesTtlMs?(sessionId: string): Promise<number>;
  close(): Promise<void>;
}

export interface PresenceOptions {
  readonly timeoutMs: number;
  /** The session TTL of the store, also the registry's TTL for records of a session it does not know. */
  readonly ttlSeconds: number;
}

export type PresenceFactory = (opts: PresenceOptions) => Promise<PresenceHarness>;

const TIMEOUT_MS = 10_000;
const T0 = Date.UTC(2025, 0, 1);
const iso = (t: number) => new Date(t).toISOString();

/** Two incarnations of node-a and one of node-b. */
const A = 'node-a/abc123';
const A2 = 'node-a/def456';
const B = 'node-b/0f0f0f';

/**
 * The PresenceRegistry contract (presence/types.ts): connection counts per device and node
 * incarnation, online/offline transitions reported once, reconciliation by absolute counts,
 * the presence timeout, kicks, reaping a dead incarnation, and records that live as long as
 * their session. Times are passed explicitly (`now`), so only the session expiry case waits.
 */
export function describePresenceRegistry(name: string, factory: PresenceFactory): void {
  describe(`PresenceRegistry contract: ${name}`, () => {
    let h: PresenceHarness;
    let p: PresenceRegistry;
    beforeAll(async () => {
      h = await factory({ timeoutMs: TIMEOUT_MS, ttlSeconds: 3600 });
      p = h.presence;
    });
    afterAll(async () => {
      await h.close();
    });
    const sid = () => randomUUID();
    const dev = (deviceId: string, extra: Partial<DeviceDescriptor> = {}): DeviceDescriptor => ({ deviceId, ...extra });
    const one = async (s: string, deviceId: string, now = T0) => (await p.list(s, now)).find((d) => d.device_id === deviceId);

    it('reports first on a device\'s first connection anywhere and last on its last one anywhere', async () => {
      const s = sid();
      expect(await p.connect(s, dev('phone'), A, T0)).toMatchObject({ first: true, devices: [{ device_id: 'phone', status: 'online', connections: 1 }] });
      expect(await p.connect(s, dev('phone'), A, T0 + 1)).toMatchObject({ first: false, devices: [{ device_id: 'phone', connections: 2 }] });
      expect(await p.connect(s, dev('phone'), B, T0 + 2)).toMatchObject({ first: false });
      const both = await p.connect(s, dev('tablet'), B, T0 + 3);
      expect(both.first).toBe(true);
      expect(both.devices.map((d) => d.device_id).sort()).toEqual(['phone', 'tablet']);
      expect(await one(s, 'phone', T0 + 3)).toMatchObject({ status: 'online', connections: 3 });
      expect(await p.disconnect(s, 'phone', A, T0 + 4)).toEqual({ last: false });
      expect(await p.disconnect(s, 'phone', B, T0 + 5)).toEqual({ last: false });
      expect(await p.disconnect(s, 'phone', B, T0 + 6)).toEqual({ last: false }); // B counted only one
      expect(await p.disconnect(s, 'phone', A, T0 + 7)).toEqual({ last: true });
      expect(await p.disconnect(s, 'phone', A, T0 + 8)).toEqual({ last: false }); // nothing left to drop
      expect(await p.disconnect(s, 'ghost', A, T0 + 8)).toEqual({ last: false });
      expect(await one(s, 'tablet', T0 + 8)).toMatchObject({ status: 'online', connections: 1 });
      expect(await p.connect(s, dev('phone'), A2, T0 + 9)).toMatchObject({ first: true });
    });

    it('lists a device online on its NODE_ID, and keeps it listed offline with its last_seen once it left', async () => {
      const s = sid();
      expect(await p.list(s, T0)).toEqual([]);
      await p.connect(s, dev('phone'), A, T0);
      expect(await p.list(s, T0 + 10)).toEqual([expect.objectContaining({
        device_id: 'phone', status: 'online', node_id: 'node-a', connected_at: iso(T0), last_seen: iso(T0), connections: 1,
      })]);
      await p.disconnect(s, 'phone', A, T0 + 500);
      const [gone] = await p.list(s, T0 + 600);
      expect(gone).toMatchObject({ device_id: 'phone', status: 'offline', connected_at: iso(T0), last_seen: iso(T0 + 500), connections: 0 });
      expect(gone.node_id).toBeUndefined();
      // Back online: a new connected_at.
      await p.connect(s, dev('phone'), B, T0 + 700);
      expect(await one(s, 'phone', T0 + 700)).toMatchObject({ status: 'online', node_id: 'node-b', connected_at: iso(T0 + 700), last_seen: iso(T0 + 700) });
    });

    it('a count that asks for the session returns it as stored at that moment, or leaves the read to the caller', async () => {
      const sid = randomUUID();
      const none = await p.connect(sid, { deviceId: 'd0' }, A, T0, true);
      expect(none.snapshot ?? null).toBeNull(); // no session yet: null, or undefined from a registry that does not read
      await h.store.mutate({
        sessionId: sid, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op: { op: 'set', key: 'mood', value: 'calm' }, originNode: A, deviceId: 'd0',
      });
      const stored = await h.store.get(sid);
      const r = await p.connect(sid, { deviceId: 'd1' }, A, T0 + 1, true);
      expect(r.devices.map((d) => d.device_id).sort()).toEqual(['d0', 'd1']);
      if (h.readsSnapshots) expect(r.snapshot).toEqual(stored);
      else expect(r.snapshot).toBeUndefined();
      expect((await p.connect(sid, { deviceId: 'd2' }, A, T0 + 2)).snapshot).toBeUndefined();
    });

    it('keeps the descriptor fields; a later connection replaces only the fields it states', async () => {
      const s = sid();
      await p.connect(s, dev('phone', { deviceType: 'mobile', deviceName: 'Ana\'s phone', osVersion: 'iOS 18.1', appVersion: '2.1.0' }), A, T0);
      await p.connect(s, dev('phone', { appVersion: '2.2.0' }), B, T0 + 1);
      await p.disconnect(s, 'phone', A, T0 + 2);
      await p.disconnect(s, 'phone', B, T0 + 3);
      expect(await one(s, 'phone', T0 + 3)).toMatchObject({
        device_type: 'mobile', device_name: 'Ana\'s phone', os_version: 'iOS 18.1', app_version: '2.2.0', status: 'offline',
      });
      await p.connect(s, dev('bare'), A, T0);
      const bare = await one(s, 'bare');
      for (const f of ['device_type', 'device_name', 'os_version', 'app_version'] as const) expect(bare![f]).toBeUndefined();
    });

    it('setCount sets one incarnation\'s count outright and reports the transition: 1, -1 or 0', async () => {
      const s = sid();
      expect(await p.setCount(s, 'phone', A, 0, T0)).toBe(0);
      expect(await p.list(s, T0)).toEqual([]); // zero for an unknown device creates nothing
      expect(await p.setCount(s, 'phone', A, 2, T0 + 1)).toBe(1);
      expect(await one(s, 'phone', T0 + 1)).toMatchObject({ status: 'online', connections: 2, node_id: 'node-a', connected_at: iso(T0 + 1) });
      expect(await p.setCount(s, 'phone', A, 2, T0 + 2)).toBe(0); // idempotent
      expect(await p.setCount(s, 'phone', B, 1, T0 + 3)).toBe(0);
      expect(await one(s, 'phone', T0 + 3)).toMatchObject({ connections: 3 });
      expect(await p.setCount(s, 'phone', A, 1, T0 + 4)).toBe(0);
      expect(await one(s, 'phone', T0 + 4)).toMatchObject({ connections: 2 });
      // The counts are real counts: connect and disconnect continue from them.
      expect(await p.disconnect(s, 'phone', A, T0 + 5)).toEqual({ last: false });
      expect(await p.disconnect(s, 'phone', B, T0 + 6)).toEqual({ last: true });
      expect(await p.setCount(s, 'phone', B, 1, T0 + 7)).toBe(1);
      expect(await p.setCount(s, 'phone', B, 0, T0 + 8)).toBe(-1);
      expect(await p.setCount(s, 'phone', B, 0, T0 + 9)).toBe(0);
      expect(await one(s, 'phone', T0 + 9)).toMatchObject({ status: 'offline', connections: 0 });
    });

    it('reconciliation: zeroing an incarnation that leaked a count takes the device offline, unless another still counts it', async () => {
      const s = sid();
      await p.connect(s, dev('phone'), A, T0); // the disconnect of this one was lost
      await p.connect(s, dev('tablet'), A, T0);
      await p.connect(s, dev('tablet'), B, T0);
      expect(await p.setCount(s, 'phone', A, 0, T0 + 1)).toBe(-1);
      expect(await p.setCount(s, 'tablet', A, 0, T0 + 1)).toBe(0);
      expect(await one(s, 'phone', T0 + 1)).toMatchObject({ status: 'offline', connections: 0 });
      expect(await one(s, 'tablet', T0 + 1)).toMatchObject({ status: 'online', connections: 1, node_id: 'node-b' });
      expect(await p.disconnect(s, 'tablet', B, T0 + 2)).toEqual({ last: true });
    });

    it('touch refreshes last_seen; silence past the timeout lists a device offline although it is counted', async () => {
      const [s, s2] = [sid(), sid()];
      await p.connect(s, dev('phone'), A, T0);
      await p.connect(s2, dev('web'), B, T0);
      expect(await one(s, 'phone', T0 + TIMEOUT_MS)).toMatchObject({ status: 'online' });
      expect(await one(s, 'phone', T0 + TIMEOUT_MS + 1)).toMatchObject({ status: 'offline', connections: 1, last_seen: iso(T0) });
      await p.touch([{ sessionId: s, deviceId: 'phone' }, { sessionId: s2, deviceId: 'web' }, { sessionId: s, deviceId: 'ghost' }], T0 + 5000);
      expect(await one(s, 'phone', T0 + 5000 + TIMEOUT_MS)).toMatchObject({ status: 'online', last_seen: iso(T0 + 5000), connected_at: iso(T0) });
      expect(await one(s2, 'web', T0 + 5000 + TIMEOUT_MS)).toMatchObject({ status: 'online', last_seen: iso(T0 + 5000) });
      expect(await one(s, 'ghost')).toBeUndefined(); // touch does not create devices
      expect(await one(s, 'phone', T0 + 5001 + TIMEOUT_MS)).toMatchObject({ status: 'offline' });
    });

    it('remove forgets a device (a kick); false when it was not known', async () => {
      const s = sid();
      await p.connect(s, dev('phone'), A, T0);
      await p.connect(s, dev('tablet'), A, T0);
      expect(await p.remove(s, 'phone')).toBe(true);
      expect((await p.list(s, T0)).map((d) => d.device_id)).toEqual(['tablet']);
      expect(await p.remove(s, 'phone')).toBe(false);
      expect(await p.remove(sid(), 'phone')).toBe(false);
      // The kicked device's connection closing afterwards does not bring the record back.
      expect(await p.disconnect(s, 'phone', A, T0 + 1)).toEqual({ last: false });
      expect((await p.list(s, T0 + 1)).map((d) => d.device_id)).toEqual(['tablet']);
    });

    it('reapNode drops only that incarnation\'s counts and returns exactly the devices that went offline by it', async () => {
      const [s, s2, elsewhere] = [sid(), sid(), sid()];
      await p.connect(s, dev('only-a'), A, T0);
      await p.connect(s, dev('only-a'), A, T0);
      await p.connect(s, dev('a-and-b'), A, T0);
      await p.connect(s, dev('a-and-b'), B, T0);
      await p.connect(s, dev('only-b'), B, T0);
      await p.connect(s, dev('new-a'), A2, T0); // the same NODE_ID, a later incarnation
      await p.connect(s2, dev('web'), A, T0);
      await p.connect(s2, dev('left'), A, T0);
      await p.disconnect(s2, 'left', A, T0 + 1);
      await p.connect(elsewhere, dev('not-listed'), A, T0); // a session the caller did not name
      const gone = await p.reapNode(A, [s, s2, sid()], T0 + 100);
      expect(gone.map((g) => `${g.sessionId === s ? 's' : 's2'}:${g.deviceId}`).sort()).toEqual(['s2:web', 's:only-a']);
      const status = async (session: string, id: string) => (await one(session, id, T0 + 100))?.status;
      expect(await status(s, 'only-a')).toBe('offline');
      expect(await one(s, 'only-a', T0 + 100)).toMatchObject({ connections: 0, device_id: 'only-a' });
      expect(await one(s, 'a-and-b', T0 + 100)).toMatchObject({ status: 'online', connections: 1, node_id: 'node-b' });
      expect(await status(s, 'only-b')).toBe('online');
      expect(await one(s, 'new-a', T0 + 100)).toMatchObject({ status: 'online', node_id: 'node-a' });
      expect(await status(s2, 'web')).toBe('offline');
      expect(await status(elsewhere, 'not-listed')).toBe('online');
      expect(await p.reapNode(A, [s, s2], T0 + 200)).toEqual([]); // nothing left of A there
      expect(await p.disconnect(s, 'a-and-b', B, T0 + 300)).toEqual({ last: true });
    });

    it('keeps the records exactly as long as their session', async () => {
      const short = await factory({ timeoutMs: TIMEOUT_MS, ttlSeconds: 1 });
      try {
        const s = sid();
        const write = (value: number) => short.store.mutate({
          sessionId: s, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op: { op: 'set', key: 'a', value }, originNode: A,
        });
        expect(await write(1)).toMatchObject({ status: 'ok' });
        await short.presence.connect(s, dev('phone'), A, Date.now());
        if (short.devicesTtlMs) {
          // Same expiry instant as the session; and the session TTL for a session the store does not know.
          const expiresAt = (await short.store.get(s))!.expiresAt;
          const ttl = await short.devicesTtlMs(s);
          expect(ttl).toBeGreaterThan(0);
          expect(Math.abs(Date.now() + ttl - expiresAt)).toBeLessThan(100);
          const unknown = sid();
          await short.presence.connect(unknown, dev('phone'), A, Date.now());
          expect(await short.devicesTtlMs(unknown)).toBeGreaterThan(500);
          expect(await short.devicesTtlMs(unknown)).toBeLessThanOrEqual(1000);
        }
        await sleep(600);
        await write(2); // slides the session's TTL, and its records'
        await sleep(600);
        expect((await short.presence.list(s, Date.now())).map((d) => d.device_id)).toEqual(['phone']);
        await eventually(async () => (await short.store.get(s)) === null, 5000);
        expect(await short.presence.list(s, Date.now())).toEqual([]);
      } finally {
        await short.close();
      }
    });
  });
}
