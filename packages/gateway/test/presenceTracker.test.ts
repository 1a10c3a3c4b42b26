import { BusKind } from '@harmonyflow/protocol';
import { eventually } from '@harmonyflow/testkit';
import type { Hub } from '../src/hub';
import { createLogger } from '../src/log';
import { MemoryPresence } from '../src/presence/memory';
import type { Connected, PresenceRegistry } from '../src/presence/types';
import type { ClaimResult, SessionStore } from '../src/store/types';
import type { Conn } from '../src/ws/conn';
import { PresenceTracker } from '../src/ws/presenceTracker';

const log = createLogger('silent', 'test');
const INSTANCE = 'node-t/0123456789abcdef';

describe('PresenceTracker', () => {
  it('a silent connection heard again announces DEVICE_JOINED from the list its count returned (no second read)', async () => {
    const inner = new MemoryPresence(60_000);
    let lists = 0;
    const presence = {
      connect: (...args: Parameters<PresenceRegistry['connect']>) => inner.connect(...args),
      list: (sessionId: string, now: number) => {
        lists++;
        return inner.list(sessionId, now);
      },
    } as PresenceRegistry;
    const published: Array<{ kind: string; body: Record<string, unknown> }> = [];
    const tracker = new PresenceTracker(presence, {} as Hub, INSTANCE, async (_sid, kind, body) => void published.push({ kind, body }), log);
    await inner.connect('s1', { deviceId: 'tablet' }, INSTANCE, Date.now()); // someone to hear it
    const c = { authed: true, counted: false, closed: false, authInFlight: false, sessionId: 's1', deviceId: 'phone' } as Conn;
    tracker.heard(c, Date.now());
    expect(c.counted).toBe(true);
    await eventually(() => published.length === 1, 2000, 5);
    expect(published[0]).toMatchObject({ kind: BusKind.DEVICE_JOINED, body: { device: { device_id: 'phone', status: 'online' } } });
    expect(lists).toBe(0);
  });

  it('a device alone in its session announces nothing (no socket could hear it); the next device is announced', async () => {
    const presence = new MemoryPresence(60_000);
    const published: Array<{ sessionId: string; kind: string; body: Record<string, unknown> }> = [];
    const tracker = new PresenceTracker(presence, {} as Hub, INSTANCE, async (sessionId, kind, body) => void published.push({ sessionId, kind, body }), log);
    const conn = (deviceId: string) => ({ authed: true, counted: false, closed: false, sessionId: 's1', deviceId }) as Conn;
    const phone = await tracker.join(conn('phone'), { deviceId: 'phone' }, Date.now());
    expect(phone.first).toBe(true);
    await tracker.joined('s1', 'phone', phone.devices);
    expect(published).toEqual([]);
    const tablet = await tracker.join(conn('tablet'), { deviceId: 'tablet' }, Date.now());
    await tracker.joined('s1', 'tablet', tablet.devices);
    expect(published).toEqual([{ sessionId: 's1', kind: BusKind.DEVICE_JOINED, body: { device: expect.objectContaining({ device_id: 'tablet', status: 'online' }) } }]);
  });

  it('a count update in flight keeps its session unsettled (it stays in the registry set) until it lands; a failed one until reconciled', async () => {
    let fail: (err: Error) => void = () => undefined;
    let succeed: () => void = () => undefined;
    const presence = {
      disconnect: () => new Promise((resolve, reject) => {
        succeed = () => resolve({ last: false });
        fail = reject;
      }),
    } as unknown as PresenceRegistry;
    const tracker = new PresenceTracker(presence, { connsOf: () => undefined } as unknown as Hub, INSTANCE, async () => undefined, log);
    const conn = (sessionId: string) => ({ authed: true, counted: true, closed: true, sessionId, deviceId: 'phone' }) as Conn;
    tracker.leave(conn('s1'), 'disconnected');
    expect(tracker.dirtySessionIds().includes('s1')).toBe(true);
    expect(tracker.dirtySessionIds()).toEqual(['s1']);
    succeed();
    await eventually(() => !tracker.dirtySessionIds().includes('s1'), 2000, 5);
    tracker.leave(conn('s2'), 'disconnected');
    fail(new Error('shard down'));
    await new Promise((r) => setTimeout(r, 20));
    expect(tracker.dirtySessionIds().includes('s2')).toBe(true); // marked for the next reconciliation
  });

  it('a connect that fails marks the device for reconciliation (it may have been counted all the same)', async () => {
    const presence = { connect: async () => { throw new Error('timeout'); } } as unknown as PresenceRegistry;
    const tracker = new PresenceTracker(presence, {} as Hub, INSTANCE, async () => undefined, log);
    const c = { authed: true, counted: false, closed: false, sessionId: 's1', deviceId: 'phone' } as Conn;
    await expect(tracker.join(c, { deviceId: 'phone' }, Date.now())).rejects.toThrow('timeout');
    expect(c.counted).toBe(false);
    expect(tracker.dirtySessionIds().includes('s1')).toBe(true);
  });

  describe('claimAndJoin (AUTH)', () => {
    const alice = { userId: 'alice', role: 'user' as const, expiresAt: Date.now() + 60_000 };
    const ok = (extra: Partial<Extract<ClaimResult, { status: 'ok' }>> = {}): ClaimResult =>
      ({ status: 'ok', userId: 'alice', version: 0, epoch: 'e', created: true, lastMutationId: 0, ...extra });
    const counted: Connected = { first: true, devices: [] };
    const conn = () => ({ authed: false, counted: false, closed: false, sessionId: 's1', deviceId: 'phone' }) as Conn;
    const claimsOf = (claim: SessionStore['claim']) => ({ store: { claim }, presenceTimeoutMs: 60_000 });

    it('a store that counts the device in its claim: counted once, the registry\'s own connect unused', async () => {
      const presence = { connect: jest.fn() } as unknown as PresenceRegistry;
      const tracker = new PresenceTracker(presence, {} as Hub, INSTANCE, async () => undefined, log, claimsOf(async () => ok({ connected: counted })));
      const c = conn();
      expect(await tracker.claimAndJoin(c, alice, { deviceId: 'phone' }, Date.now(), true)).toMatchObject({ status: 'ok', connected: counted });
      expect(c.counted).toBe(true);
      expect(presence.connect).not.toHaveBeenCalled();
    });

    it('a store that does not count (embedded): the claim, then the registry\'s connect', async () => {
      const presence = new MemoryPresence(60_000);
      const tracker = new PresenceTracker(presence, {} as Hub, INSTANCE, async () => undefined, log, claimsOf(async () => ok()));
      const c = conn();
      const r = await tracker.claimAndJoin(c, alice, { deviceId: 'phone' }, Date.now(), false);
      expect(r).toMatchObject({ status: 'ok', connected: { first: true, devices: [expect.objectContaining({ device_id: 'phone', connections: 1 })] } });
      expect(c.counted).toBe(true);
    });

    it('a socket that closed during the claim: the count taken in it is taken back, and nothing is counted after it', async () => {
      const disconnect = jest.fn(async () => ({ last: true }));
      const connect = jest.fn();
      const presence = { disconnect, connect } as unknown as PresenceRegistry;
      const c = conn();
      const closingDuring = (result: ClaimResult) => claimsOf(async () => {
        c.closed = true;
        return result;
      });
      const counting = new PresenceTracker(presence, {} as Hub, INSTANCE, async () => undefined, log, closingDuring(ok({ connected: counted })));
      expect(await counting.claimAndJoin(c, alice, { deviceId: 'phone' }, Date.now(), true)).toEqual({ status: 'closed' });
      expect(c.counted).toBe(false);
      expect(disconnect).toHaveBeenCalledTimes(1);
      const d = conn();
      const embedded = new PresenceTracker(presence, {} as Hub, INSTANCE, async () => undefined, log, claimsOf(async () => {
        d.closed = true;
        return ok();
      }));
      expect(await embedded.claimAndJoin(d, alice, { deviceId: 'phone' }, Date.now(), true)).toEqual({ status: 'closed' });
      expect(connect).not.toHaveBeenCalled();
      expect(d.counted).toBe(false);
    });

    it('someone the session does not let in is counted nowhere; a claim that fails marks the device for reconciliation', async () => {
      const presence = { connect: jest.fn() } as unknown as PresenceRegistry;
      const refusing = new PresenceTracker(presence, {} as Hub, INSTANCE, async () => undefined, log, claimsOf(async () => ok({ userId: 'bob' })));
      const c = conn();
      expect(await refusing.claimAndJoin(c, alice, { deviceId: 'phone' }, Date.now(), true)).toEqual({ status: 'forbidden' });
      expect(c.counted).toBe(false);
      expect(presence.connect).not.toHaveBeenCalled();
      const failing = new PresenceTracker(presence, {} as Hub, INSTANCE, async () => undefined, log, claimsOf(async () => {
        throw new Error('timeout');
      }));
      await expect(failing.claimAndJoin(conn(), alice, { deviceId: 'phone' }, Date.now(), true)).rejects.toThrow('timeout');
      expect(failing.dirtySessionIds()).toEqual(['s1']);
    });
  });
});
