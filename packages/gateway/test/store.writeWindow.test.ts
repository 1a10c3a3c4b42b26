import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { commandCalls, useRedis, useRedisStore } from '@harmonyflow/testkit';
import { RefusedUnappliedError, StoreUnavailableError } from '../src/errors';
import { KeySpace } from '../src/store/keys';
import type { MutationResult } from '../src/store/types';

/**
 * On one Redis the write path keeps one batch of writes awaiting its reply at a time
 * (store/redis.ts, WRITE_WINDOW): the writes made meanwhile are held and sent together when the
 * reply comes, in the order they were made, and a command other than a write still goes after the
 * writes made before it.
 */
const redis = useRedis();
const s = useRedisStore(() => ({ mode: 'single', url: redis().url }), new KeySpace('ww:'));

const write = (sessionId: string, key: string, value: number) => s.store().mutate({
  sessionId, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op: { op: 'set', key, value },
  deviceId: 'phone', originNode: 'n', correlationId: randomUUID(),
});
const nextTurn = () => new Promise((r) => setImmediate(r));
const settled = <T>(p: Promise<T>) => p.then((v) => ({ ok: true as const, v }), (e: unknown) => ({ ok: false as const, e }));

describe('write batches awaiting a reply', () => {
  let admin: Redis;
  beforeAll(() => {
    admin = new Redis(redis().url);
  });
  afterAll(async () => {
    await admin.call('CLIENT', 'UNPAUSE').catch(() => undefined);
    admin.disconnect();
  });

  it('hold the writes made meanwhile and send them in one call, in order, when the reply comes', async () => {
    const sid = randomUUID();
    await write(sid, 'warm', 0);
    await admin.config('RESETSTAT');
    // Redis leaves writes unanswered for a moment: the first batch waits for its reply.
    await admin.call('CLIENT', 'PAUSE', '300', 'WRITE');
    const first = write(sid, 'n', 1);
    await nextTurn();
    const later: Promise<MutationResult>[] = [];
    for (let i = 2; i <= 9; i++) {
      // One per event-loop turn: sent as they come, each would have been a call of its own.
      later.push(write(sid, 'n', i));
      await nextTurn();
    }
    const results = await Promise.all([first, ...later]);
    expect(results.map((r) => (r.status === 'ok' ? r.version : r.status))).toEqual([2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(await commandCalls(admin, 'fcall')).toBe(2);
    expect((await s.store().get(sid))?.state).toEqual({ warm: 0, n: 9 });
  });

  // Passes on a store without the window too: it guards the forced send of held writes.
  it('send the held writes before a read made after them', async () => {
    const sid = randomUUID();
    await write(sid, 'warm', 0);
    await admin.call('CLIENT', 'PAUSE', '300', 'WRITE');
    const first = write(sid, 'a', 1);
    await nextTurn();
    const held = write(sid, 'b', 2);
    await nextTurn();
    const read = s.store().get(sid);
    expect((await read)?.state).toEqual({ warm: 0, a: 1, b: 2 });
    expect((await first).status).toBe('ok');
    expect((await held).status).toBe('ok');
  });

  it('do not stay shut after a call that failed before it was sent', async () => {
    const sid = randomUUID();
    await write(sid, 'warm', 0);
    const client = s.client() as Redis;
    const send = client.sendCommand;
    client.sendCommand = function failOnce(this: Redis) {
      client.sendCommand = send;
      throw new Error('not sent');
    } as Redis['sendCommand'];
    const failed = await settled(write(sid, 'a', 1));
    expect(!failed.ok && failed.e).toBeInstanceOf(StoreUnavailableError);
    // Had the failed call kept its place in the window, this one would wait for a reply that never comes.
    await expect(write(sid, 'b', 2)).resolves.toMatchObject({ status: 'ok', version: 2 }); // the failed one was not applied
  });

  it('refuse the held writes, unapplied, when the batch ahead of them is not answered in time', async () => {
    const sid = randomUUID();
    await write(sid, 'warm', 0);
    // Past the 3 s command timeout.
    await admin.call('CLIENT', 'PAUSE', '4500', 'ALL');
    const sent = Date.now();
    const first = settled(write(sid, 'sent', 1));
    await nextTurn();
    const held = [settled(write(sid, 'held', 2)), settled(write(randomUUID(), 'held', 3))];
    const [a, b, c] = await Promise.all([first, ...held]);
    // The sent one timed out: Redis may still apply it (it does, below).
    expect(a.ok).toBe(false);
    expect(!a.ok && a.e).toBeInstanceOf(StoreUnavailableError);
    expect(!a.ok && a.e).not.toBeInstanceOf(RefusedUnappliedError);
    for (const r of [b, c]) {
      expect(r.ok).toBe(false);
      expect(!r.ok && r.e).toBeInstanceOf(RefusedUnappliedError);
    }
    expect(Date.now() - sent).toBeLessThan(4400); // at the timeout, not after another one
    // Answered once the pause ends (an UNPAUSE would itself wait for it).
    const snap = await s.store().get(sid);
    expect(snap?.state).toEqual({ warm: 0, sent: 1 });
  });
});
