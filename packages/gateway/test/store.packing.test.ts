import { randomBytes, randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { decodeBusFrame } from '@harmonyflow/protocol';
import { useRedis, useRedisStore } from '@harmonyflow/testkit';
import { KeySpace } from '../src/store/keys';
import { header } from '../src/store/sessionRecords';
import type { MutationRequest, StateOp } from '../src/store/types';

/**
 * The write script packs the bus frame and the session header by hand (store/lua/mutate.lua), not
 * with cmsgpack.pack. Whatever the write, both must be exactly what cmsgpack.pack makes of the same
 * values: Redis itself re-packs what it unpacks from each stored header and log entry and compares
 * (a string header of the wrong width, a number in another encoding, would differ), and the frame
 * must decode to the write.
 */
const redis = useRedis();
const keys = new KeySpace('pk:');
const s = useRedisStore(() => ({ mode: 'single', url: redis().url }), keys, {
  ttlSeconds: 600, maxStateBytes: 4 * 1024 * 1024, logLength: 1000, logMaxBytes: 8 * 1024 * 1024, maxSessionsPerUser: 0, maxHandoffsPerSession: 0,
});

// Each stored value re-packed by cmsgpack and compared, and counted: one msgpack value each, the
// header an array of 16, the frame of 15 (a re-pack alone would not see an element too many).
const REPACK = `
local function count(...) return select('#', ...) end
local h = redis.call('HGET', KEYS[1], 'h')
local e = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1][2][2]
return {h, e, cmsgpack.pack(cmsgpack.unpack(h)) == h and 1 or 0, cmsgpack.pack(cmsgpack.unpack(e)) == e and 1 or 0,
  count(cmsgpack.unpack(h)), #cmsgpack.unpack(h), count(cmsgpack.unpack(e)), #cmsgpack.unpack(e)}`;

/** JSON text that deflate cannot shrink (values past 1 KiB are stored deflated, store/valueCodec.ts). */
const incompressible = (chars: number) => JSON.stringify(randomBytes(chars).toString('base64').slice(0, chars - 2));

describe('hand-packed frames and headers', () => {
  let admin: Redis;
  beforeAll(() => {
    admin = new Redis(redis().url);
  });
  afterAll(() => admin.disconnect());

  const write = async (sessionId: string, op: StateOp, extra: Partial<MutationRequest> = {}) => {
    const r = await s.store().mutate({
      sessionId, actor: { userId: 'alice', admin: false }, ownerId: 'alice', op, deviceId: 'phone', originNode: 'node-1',
      originConn: 7, correlationId: randomUUID(), ...extra,
    });
    expect(r.status).toBe('ok');
    const k = keys.session(sessionId);
    const [h, entry, headerSame, frameSame, headerValues, headerLength, frameValues, frameLength] =
      (await admin.evalBuffer(REPACK, 2, k.meta, k.log)) as [Buffer, Buffer, number, number, number, number, number, number];
    expect({ headerSame, frameSame, headerValues, headerLength, frameValues, frameLength })
      .toEqual({ headerSame: 1, frameSame: 1, headerValues: 1, headerLength: 16, frameValues: 1, frameLength: 15 });
    return { result: r, frame: decodeBusFrame(entry), header: header(h), entry };
  };

  it('are what cmsgpack.pack makes, for every width of string and number', async () => {
    const sid = randomUUID();
    const cases: [StateOp, Partial<MutationRequest>][] = [
      [{ op: 'set', key: 'k', value: 1 }, {}],
      [{ op: 'set', key: 'k'.repeat(31), value: 'x'.repeat(29) }, { deviceId: 'd'.repeat(31), appVersion: 'a'.repeat(31) }],
      [{ op: 'set', key: 'k'.repeat(32), value: 'x'.repeat(30) }, { deviceId: 'd'.repeat(32), appVersion: 'a'.repeat(32) }],
      [{ op: 'set', key: 'k'.repeat(200), value: 'x'.repeat(253) }, { deviceId: 'd'.repeat(255) }],
      [{ op: 'set', key: 'v', value: 'x'.repeat(254) }, {}],
      // Stored as themselves up to 1 KiB, deflated and in base64 past it: str16 at both ends, str32.
      [{ op: 'set', key: 'v', value: 'x'.repeat(1000) }, {}],
      [{ op: 'set', key: 'v', value: JSON.parse(incompressible(60_000)) }, {}],
      [{ op: 'set', key: 'v', value: JSON.parse(incompressible(200_000)) }, { deviceId: '', correlationId: undefined }],
      [{ op: 'incr', key: 'n', delta: -5 }, {}],
      [{ op: 'incr', key: 'n', delta: 2.5 }, {}],
      [{ op: 'incr', key: 'n', delta: 0.1 }, {}],
      [{ op: 'incr', key: 'n', delta: -1e15 }, { mutationId: 1 }],
      [{ op: 'delete', key: 'v' }, { mutationId: 2 }],
      [{ op: 'patch', changes: { a: 1, b: 'two' }, deleted: ['n'] }, {}],
      [{ op: 'patch', changes: {}, deleted: ['a'] }, {}],
      [{ op: 'merge', changes: { c: [1, 2, 3] } }, {}],
      [{ op: 'replace', state: { only: true } }, {}],
    ];
    let longest = 0;
    for (const [op, extra] of cases) {
      const { result, frame, header: h, entry } = await write(sid, op, extra);
      longest = Math.max(longest, entry.length);
      const version = result.status === 'ok' ? result.version : -1;
      expect(frame).toMatchObject({
        sessionId: sid, originNode: 'node-1', originConn: 7, op: op.op, version,
        deviceId: extra.deviceId ?? 'phone', correlationId: 'correlationId' in extra ? '' : expect.any(String),
      });
      // Owner, version, device, app version as written; times in order.
      expect([h[0], h[1], h[7], h[8]]).toEqual(['alice', version, extra.deviceId || expect.any(String), extra.appVersion ?? expect.any(String)]);
      expect(h[3] <= h[4] && h[4] === frame!.updatedAt && h[5] === h[4] && h[9] > h[4]).toBe(true);
    }
    expect(longest).toBeGreaterThan(65_536 + 100); // the str32 case was one
  });

  it('are what cmsgpack.pack makes when a write keeps the last activity of the owner (an admin writing)', async () => {
    const sid = randomUUID();
    const first = await write(sid, { op: 'set', key: 'a', value: 1 });
    await new Promise((r) => setTimeout(r, 5));
    const { header: h } = await write(sid, { op: 'set', key: 'b', value: 2 }, { actor: { userId: 'root', admin: true }, ownerId: 'root' });
    // H_RECENT, the owner's last write, stays; the update time moves.
    expect([h[0], h[5]]).toEqual(['alice', first.header[5]]);
    expect(h[4]).toBeGreaterThan(h[5]);
  });

  it('are what cmsgpack.pack makes of figures no write produces (a header from elsewhere: negative, fractional)', async () => {
    const sid = randomUUID();
    await write(sid, { op: 'set', key: 'a', value: 1 });
    // The tombstone floor and count (lib.lua H_TF, H_TN) set to what the hand path cannot write itself.
    await admin.eval(`local h = cmsgpack.unpack(redis.call('HGET', KEYS[1], 'h')); h[13] = 2.5; h[14] = -1
      redis.call('HSET', KEYS[1], 'h', cmsgpack.pack(h))`, 1, keys.session(sid).meta);
    const { frame } = await write(sid, { op: 'set', key: 'b', value: 2 });
    expect(frame).toMatchObject({ version: 2, key: 'b' });
  });

  it('are what cmsgpack.pack makes as versions, sizes and log bytes grow past each width', async () => {
    const sid = randomUUID();
    // Versions pass 127 and 255; state bytes and the log's byte count pass 127, 255 and 65535 (the
    // last writes are 8 KB values deflate cannot shrink).
    let h: Awaited<ReturnType<typeof write>>['header'] | undefined;
    for (let i = 1; i <= 300; i++) {
      const value = i < 290 ? 'y'.repeat(10) : JSON.parse(incompressible(8_000));
      const written = await write(sid, { op: 'set', key: `k${i}`, value });
      expect(written.frame).toMatchObject({ version: i, key: `k${i}` });
      h = written.header;
    }
    // (lib.lua: H_V, H_BYTES, H_LB)
    expect(h![1]).toBe(300);
    expect(h![6]).toBeGreaterThan(65_535);
    expect(h![11]).toBeGreaterThan(65_535);
  });
});
