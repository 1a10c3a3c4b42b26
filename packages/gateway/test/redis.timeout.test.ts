import Redis from 'ioredis';
import { connectRedis, eventually, useRedisBackends } from '@harmonyflow/testkit';
import type { RedisLike } from '../src/store/redisClient';
import { unansweredMs } from '../src/store/timeoutAfterPoll';

/**
 * Command connections time commands out after 3 s, but never fail one whose reply came in while
 * the event loop was busy (store/timeoutAfterPoll.ts).
 */
const backends = useRedisBackends();
const redis = backends[0].redis!;

// On Redis Cluster every shard connection is armed as ioredis adds it.
describe.each(backends.map((b) => [b.name, b] as const))('a stall longer than the command timeout (%s)', (_name, backend) => {
  it('does not fail a command whose reply arrived during it', async () => {
    const client = await connectRedis(backend.config());
    try {
      await client.set('timeout-test:warm', '1'); // the shard connection exists
      const reply = client.set('timeout-test:warm', 'v').then(() => 'ok', (err: Error) => err.message);
      const until = Date.now() + 3300;
      while (Date.now() < until) { /* stall */ }
      expect(await reply).toBe('ok');
    } finally {
      client.disconnect();
    }
  });
});

describe('a command held for the end of the turn (coalesceWrites) across a stall', () => {
  it('is timed from its write, not failed as it leaves', async () => {
    const client = await connectRedis(backends[0].config());
    try {
      await client.set('timeout-test:held', '1');
      // Sent from an immediate: held until the next turn's check phase, after that turn's timers
      // (the sweep) have run.
      const reply = await new Promise<string>((resolve) => {
        setImmediate(() => {
          client.get('timeout-test:held').then((v) => resolve(`ok ${v}`), (err: Error) => resolve(err.message));
          const until = Date.now() + 3300;
          while (Date.now() < until) { /* stall */ }
        });
      });
      expect(reply).toBe('ok 1');
    } finally {
      client.disconnect();
    }
  });
});

describe('command timeouts', () => {
  let client: RedisLike;
  beforeAll(async () => {
    client = await connectRedis(backends[0].config());
  });
  afterAll(() => client.disconnect());

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

  it('counts from when the command was sent, also right after a stall of the event loop', async () => {
    // Timed from a clock the sweep kept, a command sent after a 2.9 s stall was already "2.9 s old"
    // and failed ~0.3 s later, while Redis was still going to answer it well within 3 s.
    const pauser = new Redis(redis().url);
    try {
      await pauser.call('CLIENT', 'PAUSE', '4300', 'ALL');
      const until = Date.now() + 2900;
      while (Date.now() < until) { /* stall */ }
      const sent = Date.now();
      await expect(client.get('timeout-test:after-stall')).resolves.toBeNull();
      expect(Date.now() - sent).toBeGreaterThan(900); // it did wait for the pause to end
    } finally {
      await pauser.call('CLIENT', 'UNPAUSE').catch(() => undefined);
      pauser.disconnect();
    }
  });
});

// The store's backlog (STORE_BACKLOG_LIMIT_MS) is read off the same send times.
describe.each(backends.map((b) => [b.name, b] as const))('how long the oldest command has waited (%s)', (_name, backend) => {
  it('counts a command from its send until its reply comes, also after it failed as timed out', async () => {
    const client = await connectRedis(backend.config());
    const cfg = backend.config();
    // Every server stops answering (on Redis Cluster every shard: the key's is among them).
    const pausers = (cfg.mode === 'single' ? [cfg.url] : cfg.nodes.map((h) => `redis://${h.host}:${h.port}`)).map((url) => new Redis(url));
    try {
      await client.set('backlog-test:k', '1');
      expect(unansweredMs(client)).toBe(0);
      await Promise.all(pausers.map((p) => p.call('CLIENT', 'PAUSE', '4000', 'ALL')));
      const sent = performance.now();
      const reply = client.get('backlog-test:k').then(() => 'answered', (err: Error) => err.message);
      await new Promise((r) => setTimeout(r, 1000));
      expect(unansweredMs(client)).toBeGreaterThanOrEqual(performance.now() - sent - 50);
      expect(unansweredMs(client)).toBeGreaterThan(900);
      expect(await reply).toBe('Command timed out'); // at 3 s, while Redis still holds it
      expect(unansweredMs(client)).toBeGreaterThan(2900);
      await eventually(() => unansweredMs(client) === 0, 3000, 20); // its late reply came
      expect(performance.now() - sent).toBeGreaterThan(3900);
    } finally {
      await Promise.all(pausers.map((p) => p.call('CLIENT', 'UNPAUSE').catch(() => undefined)));
      for (const p of pausers) p.disconnect();
      client.disconnect();
    }
  });
});
