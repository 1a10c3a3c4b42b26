import { BusKind } from '@harmonyflow/protocol';
import { eventually } from '@harmonyflow/testkit';
import type { Hub } from '../src/hub';
import { createLogger } from '../src/log';
import { MemoryPresence } from '../src/presence/memory';
import type { PresenceRegistry } from '../src/presence/types';
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
});
