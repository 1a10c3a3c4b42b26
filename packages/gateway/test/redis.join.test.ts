import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { CONTRACT_LIMITS, commandCalls, connectRedis, randomKeySpace, useRedisBackends } from '@harmonyflow/testkit';
import { RedisPresence } from '../src/presence/redis';
import type { ClaimCount } from '../src/store/types';
import { RedisStore } from '../src/store/redis';
import type { RedisLike } from '../src/store/redisClient';

/**
 * A device joining a session on Redis (WebSocket AUTH) is one script call: the claim and, when the
 * user may join, the device's count in the session's registry, with the device list and the
 * snapshot (store/lua/join.lua). It was two calls, a claim and then presence.lua's connect.
 */
const INSTANCE = 'node-j/0123456789abcdef';
const count = (deviceId: string, withSnapshot = true): ClaimCount => ({
  device: { deviceId, deviceType: 'phone' }, instance: INSTANCE, now: Date.now(), withSnapshot, timeoutMs: 60_000,
});

for (const backend of useRedisBackends()) {
  describe(`claim with a count on ${backend.name}`, () => {
    let client: RedisLike;
    let store: RedisStore;
    let quota: RedisStore;
    let presence: RedisPresence;
    beforeAll(async () => {
      client = await connectRedis(backend.config());
      const keys = randomKeySpace();
      store = new RedisStore(client, keys, CONTRACT_LIMITS);
      quota = new RedisStore(client, keys, { ...CONTRACT_LIMITS, maxSessionsPerUser: 1 });
      presence = new RedisPresence(client, keys, 60_000, CONTRACT_LIMITS.ttlSeconds * 1000);
    });
    afterAll(async () => {
      await store.close();
      await quota.close();
      client.disconnect();
    });

    it('creates the session and counts the device, with the list and the snapshot the count leaves', async () => {
      const sid = randomUUID();
      const r = await store.claim(sid, 'alice', 'phone', false, count('phone'));
      expect(r).toMatchObject({ status: 'ok', userId: 'alice', version: 0, created: true, lastMutationId: 0 });
      if (r.status !== 'ok') throw new Error('claim');
      expect(r.connected).toMatchObject({
        first: true,
        devices: [expect.objectContaining({ device_id: 'phone', device_type: 'phone', status: 'online', connections: 1 })],
        snapshot: expect.objectContaining({ sessionId: sid, userId: 'alice', version: 0, epoch: r.epoch, state: {} }),
      });
      await store.mutate({
        sessionId: sid, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op: { op: 'set', key: 'mood', value: 'calm' },
        originNode: INSTANCE, deviceId: 'phone', mutationId: 4,
      });
      const tablet = await store.claim(sid, 'alice', 'phone', false, count('phone'));
      expect(tablet).toMatchObject({
        status: 'ok', version: 1, lastMutationId: 4,
        connected: { first: false, snapshot: expect.objectContaining({ version: 1, state: { mood: 'calm' } }) },
      });
      expect(await presence.list(sid, Date.now())).toEqual([expect.objectContaining({ device_id: 'phone', connections: 2 })]);
      // Without the snapshot the count reads no state.
      const web = await store.claim(sid, 'alice', 'web', false, count('web', false));
      expect(web.status === 'ok' && web.connected).toEqual({ first: true, devices: expect.any(Array) });
    });

    it('counts nobody the session does not let in, and an admin like the owner', async () => {
      const sid = randomUUID();
      await store.claim(sid, 'alice', 'phone', false, count('phone'));
      const other = await store.claim(sid, 'mallory', 'laptop', false, count('laptop'));
      expect(other).toMatchObject({ status: 'ok', userId: 'alice', lastMutationId: 0 });
      expect(other.status === 'ok' && other.connected).toBeUndefined();
      expect((await presence.list(sid, Date.now())).map((d) => d.device_id)).toEqual(['phone']);
      const admin = await store.claim(sid, 'root', 'console', true, count('console'));
      expect(admin).toMatchObject({ status: 'ok', userId: 'alice', connected: { first: true } });
      expect((await presence.list(sid, Date.now())).map((d) => d.device_id).sort()).toEqual(['console', 'phone']);
    });

    it('under a quota: a session over it is neither made nor counted; one within it is counted once', async () => {
      const user = `q-${randomUUID().slice(0, 6)}`;
      const first = randomUUID();
      expect(await quota.claim(first, user, 'phone', false, count('phone'))).toMatchObject({
        status: 'ok', created: true, connected: { devices: [expect.objectContaining({ connections: 1 })] },
      });
      expect((await presence.list(first, Date.now()))[0].connections).toBe(1);
      const over = randomUUID();
      expect(await quota.claim(over, user, 'phone', false, count('phone'))).toEqual({ status: 'quota_exceeded' });
      expect(await presence.list(over, Date.now())).toEqual([]);
      expect(await quota.get(over)).toBeNull();
    });

    if (backend.name === 'Redis') {
      it('is one script call (it was a claim and a count)', async () => {
        const observer = new Redis(backend.config().url as string);
        try {
          const scriptCalls = () => commandCalls(observer, 'evalsha', 'eval', 'fcall');
          await store.claim(randomUUID(), 'alice', 'phone', false, count('phone')); // the script is loaded
          const before = await scriptCalls();
          const r = await store.claim(randomUUID(), 'alice', 'phone', false, count('phone'));
          expect(r).toMatchObject({ status: 'ok', connected: { first: true } });
          expect((await scriptCalls()) - before).toBe(1);
        } finally {
          observer.disconnect();
        }
      });
    }
  });
}
