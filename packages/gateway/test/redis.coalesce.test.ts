import type { Cluster } from 'ioredis';
import type Redis from 'ioredis';
import { connectRedis, useRedis, useRedisCluster } from '@harmonyflow/testkit';
import { uncorked } from '../src/store/coalesceWrites';

/**
 * Command connections write the commands of one event-loop turn to the socket together
 * (store/coalesceWrites.ts): counted at the socket's write calls, each one a system call.
 */
const redis = useRedis();
const cluster = useRedisCluster(3);

/** Counts the socket's calls down to the kernel (_write per chunk, or _writev for a corked run). */
function countWrites(client: Redis): { readonly n: number; restore(): void } {
  const s = client.stream as unknown as Record<'_write' | '_writev', (...a: unknown[]) => unknown>;
  const w = s._write, wv = s._writev;
  const counter = { n: 0, restore: () => { s._write = w; s._writev = wv; } };
  s._write = function (this: unknown, ...a: unknown[]) { counter.n++; return w.apply(this, a); };
  s._writev = function (this: unknown, ...a: unknown[]) { counter.n++; return wv.apply(this, a); };
  return counter;
}

describe('command connections coalesce their writes per event-loop turn', () => {
  let client: Redis;
  let writes: ReturnType<typeof countWrites>;
  beforeAll(async () => {
    client = (await connectRedis({ mode: 'single', url: redis().url })) as Redis;
    await client.set('coalesce:k', 'v');
  });
  afterAll(() => client.disconnect());
  beforeEach(() => (writes = countWrites(client)));
  afterEach(() => writes.restore());

  it('fifty commands sent in one turn leave in one write, each answered', async () => {
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? client.get('coalesce:k') : client.echo(`e${i}`))));
    expect(replies).toEqual(Array.from({ length: 50 }, (_, i) => (i % 2 ? 'v' : `e${i}`)));
    expect(writes.n).toBe(1);
  });

  it('a burst of thousands goes out in pieces of 64, not all at the end of the turn', async () => {
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => client.echo(`b${i}`)));
    expect(replies[199]).toBe('b199');
    expect(writes.n).toBe(4); // 64, 128, 192 at the cap, the last 8 at the end of the turn
  });

  it('commands sent from later turns are not held back by earlier ones', async () => {
    for (let i = 0; i < 5; i++) expect(await client.echo(`t${i}`)).toBe(`t${i}`);
    expect(writes.n).toBe(5);
  });

  it('a command sent uncorked from the check phase goes at once, after what was held, instead of a turn later', async () => {
    const seen = await new Promise<number[]>((resolve, reject) => {
      setImmediate(() => {
        const a = client.echo('a');
        const heldBack = writes.n; // corked until the next turn's check phase
        const b = uncorked(client, () => client.echo('b'));
        const sent = writes.n;
        Promise.all([a, b]).then((r) => (r.join() === 'a,b' ? resolve([heldBack, sent]) : reject(new Error(r.join()))), reject);
      });
    });
    expect(seen).toEqual([0, 2]);
  });
});

describe('on Redis Cluster, each shard connection coalesces its own writes', () => {
  it('fifty commands of one slot sent in one turn leave in one write to that shard, each answered', async () => {
    const client = (await connectRedis({ mode: 'cluster', nodes: cluster().hosts })) as Cluster;
    try {
      await client.set('{coalesce}:k', 'v');
      // Counted on every connected shard's socket (the slot's owner is one: it took the SET).
      const counters = client.nodes('master').filter((n) => n.stream !== undefined).map(countWrites);
      try {
        const replies = await Promise.all(Array.from({ length: 50 }, () => client.get('{coalesce}:k')));
        expect(replies.every((r) => r === 'v')).toBe(true);
        expect(counters.reduce((n, c) => n + c.n, 0)).toBe(1);
      } finally {
        for (const c of counters) c.restore();
      }
    } finally {
      client.disconnect();
    }
  });
});
