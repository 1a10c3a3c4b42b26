import { eventually } from '@harmonyflow/testkit';
import { Membership, type LocalView } from '../src/cluster/membership';
import { MemoryNodeRegistry, type ConnectionDelta, type NodeInfo } from '../src/cluster/nodeRegistry';
import { createLogger } from '../src/log';
import { MemoryPresence } from '../src/presence/memory';

const log = createLogger('silent', 'test');
const INSTANCE = 'node-m/0123456789abcdef';

/** A registry whose heartbeats can be held up (a slow Redis), reporting when each one lands. */
class SlowRegistry extends MemoryNodeRegistry {
  hold: Promise<void> | null = null;
  started = 0;
  landed = 0;
  async heartbeat(info: NodeInfo, delta: ConnectionDelta): Promise<boolean> {
    this.started++;
    if (this.hold) await this.hold;
    const missing = await super.heartbeat(info, delta);
    this.landed++;
    return missing;
  }
}

const emptyView: LocalView = {
  sessionIds: () => [],
  drainLeftSessions: () => [],
  connections: () => new Map(),
  figures: () => ({ active_connections: 0, sessions: 0 }),
};

const listed = async (r: MemoryNodeRegistry) => {
  const { live, dead } = await r.list(Date.now());
  return [...live, ...dead].some((n) => n.instance === INSTANCE);
};

describe('Membership', () => {
  it('leave() waits for a heartbeat in flight: the departed instance is not listed again after it left', async () => {
    const registry = new SlowRegistry(60_000);
    const m = new Membership(registry, new MemoryPresence(60_000), emptyView, {
      deviceTimedOut: async () => undefined,
      recount: async () => undefined,
    }, log, { instance: INSTANCE, startedAt: Date.now(), heartbeatMs: 20 });
    await m.start();
    expect(await listed(registry)).toBe(true);
    let release!: () => void;
    registry.hold = new Promise((r) => (release = r));
    const before = registry.started;
    await eventually(() => registry.started > before, 2000, 5); // a beat is now held up in flight
    // Redis answers that beat only later: leave() must not forget the instance before it lands.
    const leaving = m.leave();
    const slow = setTimeout(release, 100);
    await leaving;
    clearTimeout(slow);
    release();
    await eventually(() => registry.landed === registry.started, 2000, 5);
    expect(await listed(registry)).toBe(false);
  });
});
