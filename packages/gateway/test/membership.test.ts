import { connectRedis, eventually, randomKeySpace, useRedis } from '@harmonyflow/testkit';
import { Membership, type LocalView } from '../src/cluster/membership';
import { MemoryNodeRegistry, RedisNodeRegistry, type ConnectionDelta, type HeartbeatResult, type NodeInfo } from '../src/cluster/nodeRegistry';
import { createLogger } from '../src/log';
import { MemoryPresence } from '../src/presence/memory';

const log = createLogger('silent', 'test');
const INSTANCE = 'node-m/0123456789abcdef';

/** A registry whose heartbeats can be held up (a slow Redis), reporting when each one lands. */
class SlowRegistry extends MemoryNodeRegistry {
  hold: Promise<void> | null = null;
  started = 0;
  landed = 0;
  async heartbeat(info: NodeInfo, delta: ConnectionDelta): Promise<HeartbeatResult> {
    this.started++;
    if (this.hold) await this.hold;
    const seen = await super.heartbeat(info, delta);
    this.landed++;
    return seen;
  }
}

const emptyView: LocalView = {
  sessionIds: () => [],
  drainLeftSessions: () => [],
  hosts: () => false,
  unsettledSessionIds: () => [],
  connections: () => [],
  figures: () => ({ active_connections: 0, sessions: 0 }),
};

const listed = async (r: MemoryNodeRegistry) => {
  const { live, dead } = await r.list(Date.now());
  return [...live, ...dead].some((n) => n.instance === INSTANCE);
};

const hooks = { deviceTimedOut: async () => undefined, recount: async () => undefined };
const redis = useRedis();

describe('Membership', () => {
  it('keeps a left session in the registry set while a device count of it is unsettled, and drops it once settled', async () => {
    const registry = new MemoryNodeRegistry(60_000);
    const left: string[] = [];
    const dirty = new Set<string>();
    const hosted = new Set<string>();
    const m = new Membership(registry, new MemoryPresence(60_000), {
      ...emptyView,
      drainLeftSessions: () => left.splice(0),
      hosts: (id) => hosted.has(id),
      unsettledSessionIds: () => [...dirty],
    }, hooks, log, { instance: INSTANCE, startedAt: Date.now(), heartbeatMs: 60_000 });
    await registry.trackSessions(INSTANCE, ['s1', 's2', 's3'], []);
    left.push('s1', 's2', 's3');
    dirty.add('s1').add('s3');
    await m.beat();
    expect((await registry.sessionsOf(INSTANCE)).sort()).toEqual(['s1', 's3']);
    await m.beat();
    expect((await registry.sessionsOf(INSTANCE)).sort()).toEqual(['s1', 's3']);
    dirty.delete('s1');
    hosted.add('s3'); // joined again: its join keeps it listed, and it is drained again when it is left
    await m.beat();
    expect(await registry.sessionsOf(INSTANCE)).toEqual(['s3']);
    dirty.delete('s3');
    await m.beat();
    expect(await registry.sessionsOf(INSTANCE)).toEqual(['s3']);
  });

  it('leave() waits for a heartbeat in flight: the departed instance is not listed again after it left', async () => {
    const registry = new SlowRegistry(60_000);
    const m = new Membership(registry, new MemoryPresence(60_000), emptyView, hooks, log, { instance: INSTANCE, startedAt: Date.now(), heartbeatMs: 20 });
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

  it('an instance reaped while alive (claimed, reaped, forgotten between two beats) re-registers once in the next beat', async () => {
    const keys = randomKeySpace();
    const [mine, reaper] = await Promise.all([connectRedis({ mode: 'single', url: redis().url }), connectRedis({ mode: 'single', url: redis().url })]);
    try {
      const registry = new RedisNodeRegistry(mine, keys, 60_000, 3600_000);
      const other = new RedisNodeRegistry(reaper, keys, 60_000, 3600_000);
      let recounts = 0;
      const m = new Membership(registry, new MemoryPresence(60_000), { ...emptyView, sessionIds: () => ['s1'] }, {
        ...hooks,
        recount: async () => void recounts++,
      }, log, { instance: INSTANCE, startedAt: Date.now(), heartbeatMs: 60_000 });
      await m.beat();
      await registry.trackSessions(INSTANCE, ['s1'], []);
      expect(await other.claimReap(INSTANCE)).toBe(true);
      await other.forget(INSTANCE);
      await m.beat();
      expect(recounts).toBe(1);
      expect(await other.sessionsOf(INSTANCE)).toEqual(['s1']);
      await m.beat();
      expect(recounts).toBe(1);
    } finally {
      mine.disconnect();
      reaper.disconnect();
    }
  });
});
