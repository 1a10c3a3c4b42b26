import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { CONTRACT_LIMITS, commandCalls, connectRedis, randomKeySpace, useRedis } from '@harmonyflow/testkit';
import { RedisPresence } from '../src/presence/redis';
import { RedisStore } from '../src/store/redis';
import type { RedisLike } from '../src/store/redisClient';

/**
 * A presence touch round on one Redis is one script call per 64 sessions (store/lua/touch.lua),
 * not one per session: a node holding thousands of sessions sent thousands of commands at once.
 */
const redis = useRedis();
const T0 = 1_700_000_000_000;

describe('presence touch on one Redis', () => {
  let client: RedisLike;
  let store: RedisStore;
  let presence: RedisPresence;
  let observer: Redis;
  beforeAll(async () => {
    client = await connectRedis({ mode: 'single', url: redis().url });
    const keys = randomKeySpace();
    store = new RedisStore(client, keys, CONTRACT_LIMITS);
    presence = new RedisPresence(client, keys, 60_000, 3_600_000);
    observer = new Redis(redis().url);
  });
  afterAll(async () => {
    await store.close();
    client.disconnect();
    observer.disconnect();
  });

  /** Script calls Redis ran (EVALSHA and EVAL, as ioredis falls back to EVAL once). */
  const scriptCalls = () => commandCalls(observer, 'evalsha', 'eval');

  it('touches 150 sessions in three calls, every named device that has a record and no other', async () => {
    const sessions = Array.from({ length: 150 }, () => randomUUID());
    for (const s of sessions) {
      await store.claim(s, 'u1', 'phone');
      await presence.connect(s, { deviceId: 'phone' }, 'inst-a', T0);
      await presence.connect(s, { deviceId: 'tablet' }, 'inst-a', T0);
    }
    await presence.touch([{ sessionId: sessions[0], deviceId: 'phone' }], T0 + 1); // the script is loaded
    const entries = sessions.flatMap((s, i) => [
      { sessionId: s, deviceId: 'phone' },
      ...(i % 2 ? [{ sessionId: s, deviceId: 'tablet' }] : []),
      ...(i === 7 ? [{ sessionId: s, deviceId: 'ghost' }] : []),
    ]);
    const before = await scriptCalls();
    await presence.touch(entries, T0 + 5000);
    expect((await scriptCalls()) - before).toBe(3);
    for (const [i, s] of sessions.entries()) {
      const seen = Object.fromEntries((await presence.list(s, T0 + 5000)).map((d) => [d.device_id, d.last_seen]));
      expect(seen).toEqual({
        phone: new Date(T0 + 5000).toISOString(),
        tablet: new Date(i % 2 ? T0 + 5000 : T0).toISOString(),
      });
    }
  });
});
