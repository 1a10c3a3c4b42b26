import type { Bus } from '@harmonyflow/gateway';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { eventually } from '../eventually';

/** Two nodes' buses over one broker (one MemoryBroker, one Redis), ready to subscribe and publish. */
export interface BusPair {
  readonly a: Bus;
  readonly b: Bus;
  close(): Promise<void>;
}

export type BusFactory = () => Promise<BusPair>;

/** A broker the suite may crash: given for backends where the broker is a server (Redis). */
export interface BrokerControl {
  /** Stops the broker abruptly (nothing saved). */
  kill(): Promise<void>;
  /** Starts it again, empty, where the buses last found it. */
  restart(): Promise<void>;
}

/** What one bus received, in arrival order; frames are copied, payloads are the suite's tags. */
class Heard {
  readonly frames: Buffer[] = [];
  resubscribed = 0;

  constructor(bus: Bus) {
    bus.onFrame((data) => this.frames.push(Buffer.from(data)));
    bus.onResubscribed(() => this.resubscribed++);
  }

  /** The text frames whose tag starts with `prefix`, in arrival order. */
  tagged(prefix: string): string[] {
    return this.frames.map((f) => f.toString('latin1')).filter((t) => t.startsWith(prefix));
  }
}

const frame = (tag: string) => Buffer.from(tag, 'latin1');

/**
 * The Bus contract (bus/types.ts): per-session publish order, delivery to every subscribed bus
 * including the publisher's, none to a bus that is not subscribed, global frames to all, subscribe
 * resolving only once delivery is live, byte-exact payloads and, where the broker can fail,
 * store_unavailable while it is down and resubscription by itself once it is back.
 *
 * Negative checks never wait for "long enough": after the frame that must not arrive, the bus
 * subscribes (again) and a second frame follows on the same channel; brokers deliver a channel's
 * frames to a connection in order, so once the second frame arrived the first one would have too.
 */
export function describeBus(name: string, factory: BusFactory, broker?: BrokerControl): void {
  describe(`Bus contract: ${name}`, () => {
    let h: BusPair;
    let a: Bus;
    let b: Bus;
    let heardA: Heard;
    let heardB: Heard;
    beforeEach(async () => {
      h = await factory();
      ({ a, b } = h);
      heardA = new Heard(a);
      heardB = new Heard(b);
    });
    afterEach(async () => {
      await h.close();
    });
    const sid = () => randomUUID();

    it('delivers a session\'s frames to every subscribed bus, the publisher\'s own included, in publish order', async () => {
      const s = sid();
      await Promise.all([a.subscribe([s]), b.subscribe([s])]);
      const tags = Array.from({ length: 500 }, (_, i) => `order:${i}`);
      await Promise.all(tags.map((t) => a.publish(s, frame(t))));
      await eventually(() => heardA.tagged('order:').length === 500 && heardB.tagged('order:').length === 500, 10_000);
      expect(heardA.tagged('order:')).toEqual(tags);
      expect(heardB.tagged('order:')).toEqual(tags);
    });

    it('keeps the order of each publisher when both publish on one session', async () => {
      const s = sid();
      await Promise.all([a.subscribe([s]), b.subscribe([s])]);
      const fromA = Array.from({ length: 100 }, (_, i) => `a:${i}`);
      const fromB = Array.from({ length: 100 }, (_, i) => `b:${i}`);
      await Promise.all([...fromA.map((t) => a.publish(s, frame(t))), ...fromB.map((t) => b.publish(s, frame(t)))]);
      await eventually(() => heardA.frames.length === 200 && heardB.frames.length === 200, 10_000);
      for (const heard of [heardA, heardB]) {
        expect(heard.tagged('a:')).toEqual(fromA);
        expect(heard.tagged('b:')).toEqual(fromB);
      }
    });

    it('does not deliver to a bus that is not subscribed, nor after it unsubscribed', async () => {
      const s = sid();
      await a.subscribe([s]);
      await a.publish(s, frame('x:before-b'));
      await b.subscribe([s]);
      await a.publish(s, frame('x:b-in'));
      await eventually(() => heardB.tagged('x:').length === 1 && heardA.tagged('x:').length === 2);
      await b.unsubscribe([s]);
      await a.publish(s, frame('x:b-out'));
      await b.subscribe([s]);
      await a.publish(s, frame('x:b-back'));
      await eventually(() => heardB.tagged('x:').length === 2 && heardA.tagged('x:').length === 4);
      expect(heardB.tagged('x:')).toEqual(['x:b-in', 'x:b-back']);
      expect(heardA.tagged('x:')).toEqual(['x:before-b', 'x:b-in', 'x:b-out', 'x:b-back']);
    });

    it('delivers global frames to every bus, without any session subscription', async () => {
      await a.publishGlobal(frame('g:from-a'));
      await b.publishGlobal(frame('g:from-b'));
      await eventually(() => heardA.tagged('g:').length === 2 && heardB.tagged('g:').length === 2);
      for (const heard of [heardA, heardB]) expect(heard.tagged('g:').sort()).toEqual(['g:from-a', 'g:from-b']);
    });

    it('resolves subscribe only once delivery is live: a frame published right after arrives', async () => {
      const ids = Array.from({ length: 20 }, sid);
      for (const [i, s] of ids.entries()) {
        await a.subscribe([s]);
        await b.publish(s, frame(`live:${i}`));
      }
      await eventually(() => heardA.tagged('live:').length === ids.length);
      expect(heardA.tagged('live:').sort()).toEqual(ids.map((_, i) => `live:${i}`).sort()); // no order across sessions
      expect(heardB.tagged('live:')).toEqual([]);
    });

    it('subscribes many sessions at once: separate calls in one tick and one call with many ids', async () => {
      const single = Array.from({ length: 200 }, sid);
      const batch = Array.from({ length: 100 }, sid);
      await Promise.all([...single.map((s) => a.subscribe([s])), a.subscribe(batch)]);
      const all = [...single, ...batch];
      await Promise.all(all.map((s, i) => b.publish(s, frame(`many:${i}`))));
      await eventually(() => heardA.tagged('many:').length === all.length, 10_000);
      expect(heardA.tagged('many:').sort()).toEqual(all.map((_, i) => `many:${i}`).sort());
    });

    it('lets the last of several subscribe/unsubscribe calls for a session in one tick win', async () => {
      const [on, off] = [sid(), sid()];
      await Promise.all([a.subscribe([on, off]), a.unsubscribe([on]), a.unsubscribe([off]), a.subscribe([on])]);
      await b.publish(off, frame('tick:off'));
      await b.publish(on, frame('tick:on'));
      await a.subscribe([off]);
      await b.publish(off, frame('tick:off-again'));
      await eventually(() => heardA.tagged('tick:').length === 2);
      expect(heardA.tagged('tick:').sort()).toEqual(['tick:off-again', 'tick:on']);
    });

    it('delivers binary payloads byte-exact', async () => {
      const s = sid();
      await Promise.all([a.subscribe([s]), b.subscribe([s])]);
      const every = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
      const notUtf8 = Buffer.from([0xff, 0xfe, 0x80, 0x00, 0xc3, 0x28, 0xed, 0xa0, 0x80]);
      const big = randomBytes(256 * 1024);
      const global = Buffer.from([0x00, 0xc0, 0xaf, 0xff]);
      for (const p of [every, notUtf8, big]) await a.publish(s, p);
      await b.publishGlobal(global);
      await eventually(() => heardA.frames.length === 4 && heardB.frames.length === 4);
      const hex = (list: Buffer[]) => list.map((f) => (f.length > 64 ? `${f.length} bytes, sha ${createHash('sha1').update(f).digest('hex')}` : f.toString('hex')));
      for (const heard of [heardA, heardB]) {
        // The global frame has no place in the session's order.
        expect(hex(heard.frames.filter((f) => !f.equals(global)))).toEqual(hex([every, notUtf8, big]));
        expect(heard.frames.filter((f) => f.equals(global))).toHaveLength(1);
      }
    });

    if (broker) {
      it('rejects publishing with store_unavailable while the broker is down, and resubscribes by itself once it is back', async () => {
        const s = sid();
        await Promise.all([a.subscribe([s]), b.subscribe([s])]);
        await broker.kill();
        try {
          await expect(a.publish(s, frame('down:1'))).rejects.toMatchObject({ code: 'store_unavailable' });
          await expect(b.publishGlobal(frame('down:2'))).rejects.toMatchObject({ code: 'store_unavailable' });
        } finally {
          await broker.restart();
        }
        await eventually(() => heardA.resubscribed >= 1 && heardB.resubscribed >= 1, 15_000, 50);
        await b.publish(s, frame('up:session'));
        await a.publishGlobal(frame('up:global'));
        await eventually(() => heardA.tagged('up:').length === 2 && heardB.tagged('up:').length === 2);
        for (const heard of [heardA, heardB]) expect(heard.tagged('up:').sort()).toEqual(['up:global', 'up:session']);
        expect(heardA.tagged('down:')).toEqual([]);
      });
    }
  });
}
