import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import WebSocket from 'ws';
import { MessageType as T, type Envelope } from '@harmonyflow/protocol';
import { SessionClient, type WebSocketFactory } from '@harmonyflow/client';
import {
  api, closeAllDevices, connectDevice, eventually, spawnNode, startRedis, testTokens, type NodeProcess, type PrivateRedis, type TestDevice,
} from '@harmonyflow/testkit';

/**
 * SPEC §9 "Session epoch": when Redis loses a session under connected devices (FLUSHALL, a restart
 * without persistence), the next write reaches every connected device as one SNAPSHOT_RESPONSE of
 * the new epoch, then updates — no device drops updates because their versions look old.
 */
const FAST = { WS_RATE_PER_SECOND: '100000', WS_RATE_BURST: '100000', PRESENCE_TIMEOUT_MS: '15000', CONSISTENCY_CHECK_MS: '500', LOG_LEVEL: 'warn' };
const tokens = testTokens();

describe('Redis loses the data under connected devices', () => {
  let redis: PrivateRedis;
  let nodes: NodeProcess[];
  beforeAll(async () => {
    redis = await startRedis(); // no persistence: a restart comes back empty
    nodes = await Promise.all([1, 2].map((i) => spawnNode({ REDIS_URL: redis.url, ...FAST, NODE_ID: `loss${i}-${randomUUID().slice(0, 4)}` })));
  }, 30_000);
  afterAll(async () => {
    await closeAllDevices();
    for (const n of nodes ?? []) if (n.proc.exitCode === null) n.kill('SIGKILL');
    await Promise.all((nodes ?? []).map((n) => n.exited));
    await redis?.stop();
  });

  async function join(node: NodeProcess, deviceId: string, sid: string): Promise<TestDevice> {
    const d = await connectDevice(node.wsUrl);
    await d.auth({ token: await tokens.signAccess('alice', 'user'), device_id: deviceId, session_id: sid });
    await d.next(T.SNAPSHOT_RESPONSE);
    return d;
  }

  async function write(d: TestDevice, key: string, value: unknown): Promise<Envelope> {
    const corr = randomUUID();
    d.send({ type: T.STATE_UPDATE, correlation_id: corr, payload: { key, value, operation: 'SET' } });
    return d.waitFor((e) => (e.type === T.STATE_UPDATE_ACK || e.type === T.ERROR) && e.correlation_id === corr, 10_000);
  }

  /**
   * What the device received after `from`, from its first snapshot of the new `epoch` on: that
   * snapshot, then updates in version order — and applying them gives exactly `state`. (Before it,
   * a device may be told the session is gone: a snapshot of nothing, epoch ''.)
   */
  function expectConverged(d: TestDevice, from: number, epoch: string, state: Record<string, unknown>): void {
    const after = d.frames.slice(from).filter((e) => e.type === T.SNAPSHOT_RESPONSE || e.type === T.STATE_UPDATE);
    const first = after.findIndex((e) => e.type === T.SNAPSHOT_RESPONSE && e.payload.epoch === epoch);
    expect(first).toBeGreaterThanOrEqual(0);
    for (const e of after.slice(0, first)) expect(e.type === T.SNAPSHOT_RESPONSE && e.payload.epoch === '' && e.payload.version === 0).toBe(true);
    let mirror: Record<string, unknown> = {};
    let version = -1;
    for (const e of after.slice(first)) {
      const p = e.payload as Record<string, unknown>;
      if (e.type === T.SNAPSHOT_RESPONSE) {
        expect(p.epoch).toBe(epoch);
        mirror = { ...(p.state_data as Record<string, unknown>) };
      } else {
        expect(p.version as number).toBeGreaterThan(version);
        mirror[p.key as string] = p.value;
      }
      version = p.version as number;
    }
    expect(mirror).toEqual(state);
  }

  for (const [what, lose] of [
    ['FLUSHALL', async () => {
      const c = new Redis(redis.url);
      await c.flushall();
      c.disconnect();
    }],
    ['a restart without persistence', async () => {
      await redis.restart();
      await eventually(async () => (await Promise.all(nodes.map(async (n) => (await api(n.url, 'GET', '/ready')).status))).every((s) => s === 200), 15_000, 100);
    }],
  ] as const) {
    it(`after ${what}, the next write reaches every connected device (snapshot of the new epoch, then updates); an SDK client converges`, async () => {
      const sid = randomUUID();
      const token = await tokens.signAccess('alice', 'user');
      const a = await join(nodes[0], 'a', sid);
      const b = await join(nodes[1], 'b', sid);
      const sdk = new SessionClient({ url: nodes[1].wsUrl, token, deviceId: 'sdk', sessionId: sid, WebSocket: WebSocket as unknown as WebSocketFactory, reconnect: { minDelayMs: 50, maxDelayMs: 300 } });
      await sdk.connect();
      for (const k of ['k1', 'k2', 'k3']) expect((await write(a, k, k)).type).toBe(T.STATE_UPDATE_ACK);
      await eventually(() => b.ofType(T.STATE_UPDATE).length === 3 && sdk.version === 3);
      const oldEpoch = (await api(nodes[0].url, 'GET', `/session/${sid}`, { token })).body.epoch;

      await lose();
      const fromA = a.frames.length;
      const fromB = b.frames.length;
      // The first write after the loss creates the session again (retried while Redis comes back).
      let ack = await write(a, 'k4', 'k4');
      for (let i = 0; ack.type !== T.STATE_UPDATE_ACK && i < 20; i++) ack = await write(a, 'k4', 'k4');
      expect(ack.payload.version).toBe(1);
      expect((await write(a, 'k5', 'k5')).payload.version).toBe(2);
      const now = await api(nodes[1].url, 'GET', `/session/${sid}`, { token });
      expect(now.body).toMatchObject({ version: 2, state_data: { k4: 'k4', k5: 'k5' } });
      expect(now.body.epoch).not.toBe(oldEpoch);

      // Every connected device, the writer included (it must not keep k1-k3 as if they still existed),
      // gets one snapshot of the new epoch, then the updates after it.
      const reached = (d: TestDevice, from: number) => d.frames.slice(from).some((e) => (e.type === T.STATE_UPDATE && e.payload.key === 'k5')
        || (e.type === T.SNAPSHOT_RESPONSE && (e.payload.state_data as Record<string, unknown>).k5 === 'k5'));
      await b.waitFor(() => reached(b, fromB), 10_000);
      expectConverged(b, fromB, now.body.epoch, now.body.state_data);
      await a.waitFor(() => a.frames.slice(fromA).some((e) => e.type === T.SNAPSHOT_RESPONSE && e.payload.epoch === now.body.epoch), 10_000);
      // The writer never gets its own updates: its new-epoch snapshot holds k4, maybe k5, never k1-k3.
      const aSnap = a.frames.slice(fromA).find((e) => e.type === T.SNAPSHOT_RESPONSE && e.payload.epoch === now.body.epoch)!;
      expect(Object.keys(aSnap.payload.state_data as object).sort()).toEqual(expect.arrayContaining(['k4']));
      expect(Object.keys(aSnap.payload.state_data as object).every((k) => k === 'k4' || k === 'k5')).toBe(true);
      await eventually(() => JSON.stringify(sdk.state) === JSON.stringify(now.body.state_data) && sdk.version === 2, 10_000);

      // Presence is rebuilt for the connected devices of the new epoch.
      await eventually(async () => {
        const list = await api(nodes[0].url, 'GET', `/session/${sid}/devices`, { token });
        const online = list.body.devices?.filter((d: { status: string }) => d.status === 'online').map((d: { device_id: string }) => d.device_id).sort();
        return JSON.stringify(online) === JSON.stringify(['a', 'b', 'sdk']);
      }, 10_000, 200);
      sdk.close();
    }, 60_000);
  }
});
