import { randomUUID } from 'node:crypto';
import { useRedis, useRedisStore } from '@harmonyflow/testkit';
import { KeySpace } from '../src/store/keys';

/**
 * Sessions a build before this one left in Redis, as a rolling deploy meets them: what the write
 * path must cope with (store/lua/mutate.lua).
 */
const redis = useRedis();
const keys = new KeySpace('up:');

describe('sessions written by an earlier build', () => {
  const s = useRedisStore(() => ({ mode: 'single', url: redis().url }), keys);

  const write = (sessionId: string, value: number, correlationId?: string) => s.store().mutate({
    sessionId, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op: { op: 'set', key: 'k', value },
    deviceId: 'phone', originNode: 'n', correlationId,
  });

  it('a claimed session whose log still holds an earlier incarnation\'s entries takes its first write whole', async () => {
    const sid = randomUUID();
    await s.store().claim(sid, 'alice', 'phone');
    // An older build's claim did not clear the log: entries with ids above the first write's.
    await s.client().xadd(keys.session(sid).log, '50-0', 'f', 'stale');
    const r = await write(sid, 1);
    expect(r).toMatchObject({ status: 'ok', version: 1 });
    expect(await s.store().get(sid)).toMatchObject({ version: 1, state: { k: 1 } });
    const log = await s.store().updatesSince(sid, 0, null);
    expect(log?.frames).toHaveLength(1);
  });

  it('correlation-id records of the format before the generations are dropped at the first generation switch', async () => {
    const sid = randomUUID();
    await write(sid, 0);
    const meta = keys.session(sid).meta;
    await s.client().hset(meta, 'c:5:phoneold-1', `${Date.now()}|1|`, 'c:5:phoneold-2', `${Date.now()}|1|`);
    for (let i = 1; i <= 64; i++) await write(sid, i, `corr-${i}`);
    const fields = await s.client().hkeys(meta);
    expect(fields.filter((f) => f.startsWith('c:'))).toEqual([]);
    expect(fields.filter((f) => f.startsWith('c0:') || f.startsWith('c1:')).length).toBeGreaterThanOrEqual(1);
  });
});
