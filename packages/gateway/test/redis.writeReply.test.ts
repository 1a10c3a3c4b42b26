import { randomUUID } from 'node:crypto';
import { pack, unpack } from 'msgpackr';
import { BusKind, decodeBusFrame } from '@harmonyflow/protocol';
import { useRedis, useRedisStore } from '@harmonyflow/testkit';
import { KeySpace } from '../src/store/keys';
import type { RedisStore } from '../src/store/redis';

/**
 * mutate.lua writes its success reply as msgpack by hand (store/lua/mutate.lua, OK_HEAD), and reads
 * the session id off the meta key by the prefix's length: what the Node side decodes must not
 * change with the version's width, the INCREMENT result or the characters of the key prefix (the
 * configuration refuses braces in REDIS_PREFIX; a KeySpace built in code may hold them).
 */
const redis = useRedis();

/** A store with keys under `prefix` on the private Redis, for the enclosing describe block. */
function storeWith(prefix: string) {
  const keys = new KeySpace(prefix);
  return { keys, ...useRedisStore(() => ({ mode: 'single', url: redis().url }), keys) };
}

describe('the write path\'s reply', () => {
  const s = storeWith('wr:');
  const write = (sessionId: string, op: Parameters<RedisStore['mutate']>[0]['op']) => s.store().mutate({
    sessionId, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op, deviceId: 'phone', originNode: 'n', correlationId: randomUUID(),
  });

  /** Puts the stored session at `version` (header rewritten, log started afresh), as if it had taken that many writes. */
  async function atVersion(sessionId: string, version: number): Promise<void> {
    const k = s.keys.session(sessionId);
    const h = unpack((await s.client().hgetBuffer(k.meta, 'h'))!) as unknown[];
    h[1] = version; // H_V
    h[10] = 0; // H_LF: no log yet
    h[11] = 0; // H_LB
    await s.client().multi().hset(k.meta, 'h', pack(h)).del(k.log).exec();
  }

  it.each([126, 127, 254, 255, 65534, 65535, 2 ** 32 - 2, 2 ** 32 - 1])('decodes the version written after %d, at every msgpack width', async (before) => {
    const sid = randomUUID();
    expect(await write(sid, { op: 'set', key: 'k', value: 0 })).toMatchObject({ status: 'ok', version: 1, created: true });
    await atVersion(sid, before);
    const r = await write(sid, { op: 'set', key: 'k', value: 1 });
    expect(r).toMatchObject({ status: 'ok', version: before + 1, created: false, rebased: false, duplicate: false, userId: 'alice', deviceId: 'phone' });
    expect(await s.store().get(sid)).toMatchObject({ version: before + 1, state: { k: 1 } });
    const log = await s.store().updatesSince(sid, before, null);
    const f = decodeBusFrame(log!.frames[0]);
    expect(f).toMatchObject({ kind: BusKind.UPDATE, sessionId: sid, version: before + 1 });
  });

  it.each([
    [0, 1, 1], [2.5, 0.25, 2.75], [-1, -1e21, -1e21], [1e-7, 0, 1e-7], [0.1, 0.2, 0.30000000000000004], [Number.MAX_SAFE_INTEGER, -1, 9007199254740990],
  ])('an INCREMENT of %d by %d answers %d', async (start, delta, result) => {
    const sid = randomUUID();
    await write(sid, { op: 'set', key: 'n', value: start });
    const r = await write(sid, { op: 'incr', key: 'n', delta });
    expect(r).toMatchObject({ status: 'ok', version: 2, value: result });
  });

  it('a rebased write and a merge say so', async () => {
    const sid = randomUUID();
    await write(sid, { op: 'set', key: 'a', value: 1 });
    await write(sid, { op: 'set', key: 'b', value: 2 });
    const rebased = await s.store().mutate({
      sessionId: sid, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op: { op: 'set', key: 'c', value: 3 }, baseVersion: 1, deviceId: 'phone', originNode: 'n',
    });
    expect(rebased).toMatchObject({ status: 'ok', version: 3, rebased: true });
    const merged = await write(sid, { op: 'merge', changes: { d: 4 } });
    expect(merged).toMatchObject({ status: 'ok', version: 4, state: { a: 1, b: 2, c: 3, d: 4 } });
  });
});

describe.each(['tëst{x}:', '{a}b:', ''])('a key prefix %j', (prefix) => {
  const s = storeWith(prefix);
  it('leaves the session id in the frames whole', async () => {
    const sid = `s-${randomUUID()}`;
    await s.store().mutate({ sessionId: sid, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op: { op: 'set', key: 'k', value: 1 }, deviceId: 'phone', originNode: 'n' });
    const log = await s.store().updatesSince(sid, 0, null);
    expect(decodeBusFrame(log!.frames[0])).toMatchObject({ kind: BusKind.UPDATE, sessionId: sid, version: 1 });
  });

  it('a device\'s claim lists the session under its own id in the owner\'s index', async () => {
    const sid = `c-${randomUUID()}`;
    await s.store().claim(sid, 'carol', 'phone');
    expect(await s.store().latestSessionOf('carol')).toBe(sid);
  });
});
