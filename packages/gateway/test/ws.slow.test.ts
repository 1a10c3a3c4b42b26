import { randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import { MessageType as T, type Envelope } from '@harmonyflow/protocol';
import {
  api, closeAllDevices, connectDevice, useNode, useRedis, type StartedNode, type TestDevice,
} from '@harmonyflow/testkit';

/*
 * Slow consumers are coalesced, not buffered without bound (hub.ts): once a socket's buffered
 * amount passes the slow-consumer threshold (256 KiB) it stops receiving deltas, and when it
 * drains it gets one fresh SNAPSHOT_RESPONSE instead of the backlog.
 *
 * A reader whose TCP socket is paused (the client stops reading: first the kernel buffers fill,
 * a few MB on loopback, then uWS buffers) watches a writer push many large SETs, while a normal
 * watcher sees every one of them. The volume (300 × 60 KB ≈ 18 MB) is well above what the
 * kernel absorbs, so most of it has to be coalesced.
 */

const UPDATES = 300;
/** Updates sent before waiting for the watcher to have them. */
const BURST = 20;
const VALUE_CHARS = 60_000;
const KEYS = 8; // 8 × 60 KB of state: below MAX_STATE_BYTES (1 MiB)
const MAX_MESSAGE_BYTES = 65_536;

const redis = useRedis();
afterAll(closeAllDevices);

/** Deterministic, poorly compressible text (the Redis store deflates values above 1 KiB). */
function bigValue(i: number): string {
  let x = (i + 1) * 2654435761;
  let s = `v${i}:`;
  while (s.length < VALUE_CHARS) {
    x = (Math.imul(x ^ (x >>> 13), 0x5bd1e995) + 0x6b) >>> 0;
    s += x.toString(36);
  }
  return s.slice(0, VALUE_CHARS);
}

/** The `net.Socket` under a `ws` client. */
function tcp(d: TestDevice): Socket {
  return (d.socket as unknown as { _socket: Socket })._socket;
}

async function fanout(n: StartedNode, outcome: string): Promise<number> {
  const r = await api(n.url, 'GET', '/metrics');
  expect(r.status).toBe(200);
  const line = String(r.body).split('\n').find((l) => l.startsWith('hf_fanout_frames_total{') && l.includes(`outcome="${outcome}"`));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** The session version a server frame carries (STATE_UPDATE or SNAPSHOT_RESPONSE). */
function versionOf(e: Envelope): number {
  return (e.payload as { version: number }).version;
}

const stores: Array<[string, () => Record<string, string>]> = [
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url, REDIS_PREFIX: `s${randomUUID().slice(0, 6)}:` })],
];

describe.each(stores)('slow consumers (%s)', (_name, storeEnv) => {
  const started = useNode(() => ({
    MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES), WS_RATE_PER_SECOND: '100000', WS_RATE_BURST: '100000', ...storeEnv(),
  }));

  it('a paused reader stops getting deltas past the threshold and gets one fresh snapshot on drain', async () => {
    const n = started();
    const token = await n.token('alice');
    const sid = randomUUID();
    const join = async (deviceId: string) => {
      const d = await connectDevice(n.wsUrl);
      await d.auth({ token, device_id: deviceId, session_id: sid });
      await d.next(T.SNAPSHOT_RESPONSE);
      return d;
    };
    const writer = await join('writer');
    const watcher = await join('watcher');
    const reader = await join('reader');
    const skippedBefore = await fanout(n, 'skipped_slow');
    const resyncBefore = await fanout(n, 'resync');

    const from = reader.frames.length;
    tcp(reader).pause();

    const expected: Record<string, string> = {};
    const frameBytes = JSON.stringify({ type: T.STATE_UPDATE, timestamp: Date.now(), correlation_id: `w${UPDATES}`, payload: { key: 'k0', value: bigValue(0), operation: 'SET' } }).length;
    expect(frameBytes).toBeLessThan(MAX_MESSAGE_BYTES);
    // In bursts the watcher keeps up with (a burst fits in its socket's kernel buffer): the test
    // is about a reader that stopped, not about a writer outrunning every reader. Sent all at once,
    // a busy machine (CI's parallel workers share this process's event loop) could leave the
    // watcher behind too, and it rightly got a snapshot instead of the deltas.
    for (let i = 0; i < UPDATES; i++) {
      const value = bigValue(i);
      expected[`k${i % KEYS}`] = value;
      writer.send({ type: T.STATE_UPDATE, correlation_id: `w${i}`, payload: { key: `k${i % KEYS}`, value, operation: 'SET' } });
      if ((i + 1) % BURST === 0) await watcher.waitFor((e) => e.type === T.STATE_UPDATE && versionOf(e) === i + 1, 20_000);
    }

    const lastAck = await writer.waitFor((e) => e.type === T.STATE_UPDATE_ACK && versionOf(e) === UPDATES, 20_000);
    expect(lastAck.correlation_id).toBe(`w${UPDATES - 1}`);
    expect(writer.ofType(T.ERROR)).toEqual([]);

    // The normal device gets every update, in order, with the written values.
    await watcher.waitFor((e) => e.type === T.STATE_UPDATE && versionOf(e) === UPDATES, 20_000);
    const seen = watcher.ofType(T.STATE_UPDATE);
    expect(seen.map(versionOf)).toEqual(Array.from({ length: UPDATES }, (_, i) => i + 1));
    expect(seen.every((e, i) => e.payload.key === `k${i % KEYS}` && e.payload.value === bigValue(i) && e.payload.device_id === 'writer')).toBe(true);

    // The paused reader was marked slow: deltas were skipped instead of buffered, and nothing
    // was resent to it while it was still backed up (the snapshot waits for the drain).
    const skipped = (await fanout(n, 'skipped_slow')) - skippedBefore;
    const resyncsWhilePaused = (await fanout(n, 'resync')) - resyncBefore;
    expect(skipped).toBeGreaterThan(0);

    tcp(reader).resume();
    // The drain: one SNAPSHOT_RESPONSE at the final version (or the socket got closed: reported below).
    const snap = await reader.waitFor((e) => e.type === T.SNAPSHOT_RESPONSE && versionOf(e) === UPDATES, 20_000, from).catch(() => null);

    const got = reader.frames.slice(from);
    const summary = {
      closeCode: reader.closeCode,
      resyncsWhilePaused,
      snapshots: got.filter((e) => e.type === T.SNAPSHOT_RESPONSE).map(versionOf),
      deltas: got.filter((e) => e.type === T.STATE_UPDATE).length,
      finalSnapshot: snap !== null,
    };
    expect(summary).toEqual({
      closeCode: null, resyncsWhilePaused: 0, snapshots: [UPDATES], deltas: expect.any(Number), finalSnapshot: true,
    });
    // Coalesced: far fewer deltas than were written (the rest of the backlog was never buffered).
    expect(summary.deltas).toBeLessThan(UPDATES / 2);
    expect(snap!.payload.state_data).toEqual(expected);
    expect(snap!.payload.session_id).toBe(sid);

    // Still live afterwards: a heartbeat round trip, then the next change arrives as a delta.
    reader.send({ type: T.HEARTBEAT, correlation_id: 'after', payload: { client_time: 1 } });
    await reader.waitFor((e) => e.type === T.HEARTBEAT_ACK && e.correlation_id === 'after', 10_000, from);
    writer.send({ type: T.STATE_UPDATE, correlation_id: 'tail', payload: { key: 'tail', value: true, operation: 'SET' } });
    const tail = await reader.waitFor((e) => e.type === T.STATE_UPDATE && versionOf(e) === UPDATES + 1, 10_000, from);
    expect(tail.payload).toMatchObject({ key: 'tail', value: true, device_id: 'writer' });

    // In arrival order, state versions only go up: no version twice, none out of order.
    const versions = reader.frames.slice(from).filter((e) => e.type === T.STATE_UPDATE || e.type === T.SNAPSHOT_RESPONSE).map(versionOf);
    const backwards = versions.findIndex((v, i) => i > 0 && v <= versions[i - 1]);
    expect(backwards === -1 ? 'strictly increasing' : versions.slice(Math.max(0, backwards - 3), backwards + 2)).toBe('strictly increasing');
    // Deltas that were delivered carry the value written at their version.
    const wrong = reader.frames.slice(from).filter((e) => e.type === T.STATE_UPDATE && versionOf(e) <= UPDATES && e.payload.value !== bigValue(versionOf(e) - 1));
    expect(wrong.map(versionOf)).toEqual([]);
    expect(reader.ofType(T.ERROR)).toEqual([]);
    expect(reader.closeCode).toBeNull();
  }, 40_000);
});
