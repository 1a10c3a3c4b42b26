import Redis from 'ioredis';
import { useRedis } from '@harmonyflow/testkit';
import { createLogger } from '../src/log';
import { createRedis, whenReady, type RedisLike } from '../src/store/redisClient';

/**
 * Command connections time commands out after 3 s, but never fail one whose reply came in while
 * the event loop was busy (store/timeoutAfterPoll.ts).
 */
const redis = useRedis();

describe('command timeouts', () => {
  let client: RedisLike;
  beforeAll(async () => {
    client = createRedis({ mode: 'single', url: redis().url }, createLogger('silent', 'test'), 'command', 'timeout-test');
    await whenReady(client, 5000);
  });
  afterAll(() => client.disconnect());

  it('a reply that arrived during a stall of the event loop longer than the timeout is not failed as timed out', async () => {
    const reply = client.set('timeout-test:k', 'v').then(() => 'ok', (err: Error) => err.message);
    // Busy for longer than the command timeout: the reply arrives meanwhile and waits in the socket.
    const until = Date.now() + 3300;
    while (Date.now() < until) { /* stall */ }
    expect(await reply).toBe('ok');
  });

  it('a command Redis does not answer still fails after the timeout', async () => {
    const pauser = new Redis(redis().url);
    try {
      await pauser.call('CLIENT', 'PAUSE', '4500', 'ALL');
      const started = Date.now();
      await expect(client.get('timeout-test:k')).rejects.toThrow('Command timed out');
      expect(Date.now() - started).toBeGreaterThanOrEqual(2900);
      expect(Date.now() - started).toBeLessThan(4000);
    } finally {
      await pauser.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      pauser.disconnect();
    }
  });
});
