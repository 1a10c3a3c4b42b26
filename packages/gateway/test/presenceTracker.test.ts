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
    const c = { authed: true, counted: false, closed: false, authInFlight: false, sessionId: 's1', deviceId: 'phone' } as Conn;
    tracker.heard(c, Date.now());
    expect(c.counted).toBe(true);
    await eventually(() => published.length === 1, 2000, 5);
    expect(published[0]).toMatchObject({ kind: BusKind.DEVICE_JOINED, body: { device: { device_id: 'phone', status: 'online' } } });
    expect(lists).toBe(0);
  });
});
