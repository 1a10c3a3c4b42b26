import { useRedis } from '@harmonyflow/testkit';
import { createLogger } from '../src/log';
import { createRedis, whenReady, type RedisLike } from '../src/store/redisClient';

/**
 * The command connection sends the commands of one tick as one socket write (store/coalescedWrites.ts)
 * and keeps their order.
 */
const redis = useRedis();

describe('command writes coalesced per tick', () => {
  let client: RedisLike;
  beforeAll(async () => {
    client = createRedis({ mode: 'single', url: redis().url }, createLogger('silent', 'test'), 'command', 'coalesce-test');
    await whenReady(client, 5000);
  });
  afterAll(() => client.disconnect());

  /** Counts the socket writes (one syscall each) the client's stream makes while `fn` runs. */
  async function socketWrites(fn: () => Promise<unknown>): Promise<number> {
    const stream = (client as unknown as { stream: { _write: (...a: unknown[]) => void; _writev: (...a: unknown[]) => void } }).stream;
    const write = stream._write;
    const writev = stream._writev;
    let n = 0;
    stream._write = function (...a: unknown[]) { n++; return write.apply(this, a); };
    stream._writev = function (...a: unknown[]) { n++; return writev.apply(this, a); };
    try {
      await fn();
    } finally {
      stream._write = write;
      stream._writev = writev;
    }
    return n;
  }

  it('200 commands issued in one tick leave in one write, answered in the order they were sent', async () => {
    const key = `coalesce:${Date.now()}`;
    let replies: unknown[] = [];
    const writes = await socketWrites(async () => {
      const pending: Array<Promise<unknown>> = [];
      for (let i = 0; i < 100; i++) {
        pending.push(client.rpush(key, String(i)));
        pending.push(client.lrange(key, -1, -1));
      }
      replies = await Promise.all(pending);
    });
    expect(writes).toBe(1);
    for (let i = 0; i < 100; i++) {
      expect(replies[2 * i]).toBe(i + 1);
      expect(replies[2 * i + 1]).toEqual([String(i)]);
    }
    await client.del(key);
  });

  it('commands of different ticks are not held back for each other', async () => {
    const key = `coalesce:${Date.now()}:b`;
    const writes = await socketWrites(async () => {
      for (let i = 0; i < 5; i++) await client.set(key, String(i));
    });
    expect(writes).toBe(5);
    expect(await client.get(key)).toBe('4');
    await client.del(key);
  });
});
