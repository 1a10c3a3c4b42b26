import Redis from 'ioredis';
import { useRedis } from '@harmonyflow/testkit';
import { EncodedCommand, encodeCommand } from '../src/store/encodedCommand';

/** The write path's own RESP text (store/encodedCommand.ts), sent through ioredis. */
const redis = useRedis();

describe('encodeCommand', () => {
  it('counts bytes, not characters, and writes numbers as decimal text', () => {
    expect(encodeCommand('FCALL', 'f', [2, 'ü€', '😀', ''])).toBe(
      '*6\r\n$5\r\nFCALL\r\n$1\r\nf\r\n$1\r\n2\r\n$5\r\nü€\r\n$4\r\n😀\r\n$0\r\n\r\n',
    );
  });
});

describe('EncodedCommand on a real Redis', () => {
  let r: Redis;
  beforeAll(() => {
    r = new Redis(redis().url);
  });
  afterAll(() => r.disconnect());

  it('sends multi-byte text intact and answers with Buffers, in order with ioredis commands', async () => {
    const value = 'ü€😀 "quoted" \r\n end';
    const set = new EncodedCommand('HSET', 'enc-test:h', ['f', value, 'n', 42]);
    r.sendCommand(set);
    const read = r.hgetall('enc-test:h');
    expect(await set.promise).toBe(2);
    expect(await read).toEqual({ f: value, n: '42' });

    const get = new EncodedCommand('HGET', 'enc-test:h', ['f']);
    r.sendCommand(get);
    const reply = (await get.promise) as Buffer;
    expect(Buffer.isBuffer(reply)).toBe(true);
    expect(reply.toString('utf8')).toBe(value);
  });

  it('rejects with the error Redis answers', async () => {
    const bad = new EncodedCommand('HGET', 'enc-test:h', []);
    r.sendCommand(bad);
    await expect(bad.promise).rejects.toThrow(/wrong number of arguments/);
  });
});
