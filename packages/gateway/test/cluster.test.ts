import { randomUUID } from 'node:crypto';
import WebSocket from 'ws';
import { MessageType as T } from '@harmonyflow/protocol';
import { SessionClient, type WebSocketFactory } from '@harmonyflow/client';
import {
  api, closeAllDevices, connectDevice, eventually, freePort, spawnNode, startHaproxy, startRedis, testTokens, useRedisBackends,
  type NodeProcess, type RedisBackend, type TestDevice,
} from '@harmonyflow/testkit';

/**
 * Multi-process cluster tests: real gateway processes sharing a real Redis (or a 3-master Redis
 * Cluster), clients on different nodes, exact counts.
 */
const FAST = { WS_RATE_PER_SECOND: '100000', WS_RATE_BURST: '100000', PRESENCE_TIMEOUT_MS: '2000' };
const tokens = testTokens();

const backends = useRedisBackends().map((b): [string, RedisBackend] => [b.name, b]);

async function stopAll(nodes: NodeProcess[]): Promise<void> {
  for (const n of nodes) if (n.proc.exitCode === null) n.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
}

describe.each(backends)('cluster over %s', (_name, backend) => {
  let nodes: NodeProcess[];
  let nodeIds: string[];
  beforeAll(async () => {
    nodeIds = [1, 2, 3].map((i) => `node-${i}-${randomUUID().slice(0, 4)}`);
    nodes = await Promise.all(nodeIds.map((id) => spawnNode({ ...backend.env(), ...FAST, NODE_ID: id, LOG_LEVEL: 'warn' })));
  }, 60_000);
  afterAll(async () => {
    await closeAllDevices();
    await stopAll(nodes ?? []);
  });
  afterEach(closeAllDevices);

  async function join(node: NodeProcess, deviceId: string, sid: string, user = 'alice'): Promise<TestDevice> {
    const d = await connectDevice(node.wsUrl);
    await d.auth({ token: await tokens.signAccess(user, 'user'), device_id: deviceId, session_id: sid });
    await d.next(T.SNAPSHOT_RESPONSE);
    return d;
  }

  it('devices on three nodes see each other\'s updates, joins, leaves, kicks, handoffs and broadcasts', async () => {
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');
    const phone = await join(nodes[0], 'phone', sid);
    const tablet = await join(nodes[1], 'tablet', sid);
    expect((await phone.next(T.DEVICE_JOINED)).payload.device).toMatchObject({ device_id: 'tablet' });
    const web = await join(nodes[2], 'web', sid);
    await phone.waitFor((e) => e.type === T.DEVICE_JOINED && (e.payload.device as { device_id: string }).device_id === 'web');
    await tablet.next(T.DEVICE_JOINED);

    phone.send({ type: T.STATE_UPDATE, correlation_id: 'p1', payload: { key: 'mood', value: 'calm', operation: 'SET' } });
    expect((await phone.next(T.STATE_UPDATE_ACK)).payload.version).toBe(1);
    for (const d of [tablet, web]) expect((await d.next(T.STATE_UPDATE)).payload).toMatchObject({ key: 'mood', value: 'calm', version: 1, device_id: 'phone' });

    // Device list is cluster-wide, from any node.
    const list = await api(nodes[2].url, 'GET', `/session/${sid}/devices`, { token });
    const where = Object.fromEntries(list.body.devices.map((x: { device_id: string; node_id: string; status: string }) => [x.device_id, x.status]));
    expect(where).toEqual({ phone: 'online', tablet: 'online', web: 'online' });

    // Handoff created on node 3, consumed on node 1; target on node 2, source on node 1.
    const h = await api(nodes[2].url, 'POST', `/session/${sid}/handoff`, { token, body: { source_device: 'phone', target_device: 'tablet' } });
    expect(h.status).toBe(201);
    expect((await tablet.next(T.HANDOFF_REQUESTED)).payload.token).toBe(h.body.token);
    expect((await api(nodes[0].url, 'GET', `/session/${sid}/handoff/${h.body.token}`, { token })).body).toMatchObject({ valid: true, version: 1, state_data: { mood: 'calm' } });
    expect((await phone.next(T.HANDOFF_COMPLETED)).payload).toEqual({ target_device: 'tablet' });
    expect((await api(nodes[1].url, 'GET', `/session/${sid}/handoff/${h.body.token}`, { token })).status).toBe(410);

    // Broadcast from node 2 reaches all nodes.
    const admin = await tokens.signAccess('root', 'admin');
    expect((await api(nodes[1].url, 'POST', '/admin/broadcast', { token: admin, body: { message: 'hi all', type: 'info' } })).status).toBe(202);
    for (const d of [phone, tablet, web]) expect((await d.next(T.BROADCAST)).payload).toEqual({ message: 'hi all', type: 'info' });

    // Kick answered by node 1 closes the socket on node 3.
    expect((await api(nodes[0].url, 'DELETE', `/session/${sid}/device/web`, { token })).status).toBe(204);
    expect(await web.closed).toBe(4000);
    expect((await tablet.next(T.DEVICE_LEFT)).payload).toEqual({ device_id: 'web', reason: 'kicked' });

    // A plain disconnect on node 2 is announced on node 1.
    await tablet.close();
    expect((await phone.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === 'tablet')).payload.reason).toBe('disconnected');

    // Cluster-wide admin figures: every node is counted.
    const all = await eventually(async () => {
      const r = await api(nodes[0].url, 'GET', '/admin/metrics/connections', { token: admin });
      return r.body.nodes.length === 3 ? r : null;
    }, 10_000, 200);
    expect(all.body.nodes.map((x: { node_id: string }) => x.node_id).sort()).toEqual([...nodeIds].sort());
  }, 60_000);

  it('3 writers on 3 nodes x 300 INCREMENTs end at 900 / version 900, every device sees 1..900 once, in order', async () => {
    const sid = randomUUID();
    const observers = await Promise.all(nodes.map((n, i) => join(n, `observer-${i}`, sid)));
    const writers = await Promise.all(nodes.map((n, i) => join(n, `writer-${i}`, sid)));
    const PER = 300;
    await Promise.all(writers.map(async (w, i) => {
      for (let k = 0; k < PER; k++) w.send({ type: T.STATE_UPDATE, correlation_id: `w${i}-${k}`, payload: { key: 'count', value: 1, operation: 'INCREMENT' } });
      await w.waitFor(() => w.ofType(T.STATE_UPDATE_ACK).length === PER, 60_000);
    }));
    const expected = Array.from({ length: 3 * PER }, (_, i) => i + 1);
    for (const o of observers) {
      await o.waitFor(() => o.ofType(T.STATE_UPDATE).length >= 3 * PER, 30_000);
      await new Promise((r) => setTimeout(r, 100));
      expect(o.ofType(T.STATE_UPDATE).map((e) => e.payload.version)).toEqual(expected);
      expect(o.ofType(T.STATE_UPDATE).map((e) => e.payload.value)).toEqual(expected);
    }
    for (const w of writers) {
      const own = w.ofType(T.STATE_UPDATE_ACK).map((e) => e.payload.version as number);
      const others = w.ofType(T.STATE_UPDATE).map((e) => e.payload.version as number);
      for (let i = 1; i < others.length; i++) expect(others[i]).toBeGreaterThan(others[i - 1]);
      expect([...own, ...others].sort((a, b) => a - b)).toEqual(expected);
    }
    const snap = await api(nodes[1].url, 'GET', `/session/${sid}`, { token: await tokens.signAccess('alice', 'user') });
    expect(snap.body).toMatchObject({ version: 900, state_data: { count: 900 } });
  }, 120_000);
});

describe('failures', () => {
  async function clients(url: string, sid: string, count: number) {
    const token = await tokens.signAccess('alice', 'user');
    const cs = Array.from({ length: count }, (_, i) => new SessionClient({
      url, token, deviceId: `dev-${i}`, sessionId: sid, WebSocket: WebSocket as unknown as WebSocketFactory, reconnect: { minDelayMs: 50, maxDelayMs: 400 },
    }));
    await Promise.all(cs.map((c) => c.connect()));
    return cs;
  }

  /** Each client increments `perClient` times (a few in flight), counting what was acknowledged. */
  function writeLoad(cs: SessionClient[], perClient: number) {
    const acked = { n: 0 };
    const done = Promise.all(cs.map(async (c) => {
      for (let k = 0; k < perClient; k++) {
        await c.increment('total');
        acked.n++;
      }
    }));
    return { acked, done };
  }

  /** Every acknowledged increment is in the store and in every client's mirror. */
  async function expectNothingLost(load: ReturnType<typeof writeLoad>, cs: SessionClient[], total: number, nodeUrl: string) {
    await load.done;
    expect(load.acked.n).toBe(total);
    const snap = await api(nodeUrl, 'GET', `/session/${cs[0].sessionId}`, { token: await tokens.signAccess('alice', 'user') });
    expect(snap.body.state_data.total).toBe(total);
    await eventually(() => cs.every((c) => c.state.total === total), 15_000);
    for (const c of cs) c.close();
  }

  it('SIGKILL of a node mid-stream: clients reconnect through HAProxy, resume, and nothing acknowledged is lost', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, ...FAST };
    const nodes = await Promise.all([1, 2, 3].map((i) => spawnNode({ ...env, NODE_ID: `k${i}`, LOG_LEVEL: 'warn' })));
    const lb = await startHaproxy(nodes.map((n) => n.port));
    try {
      const sid = randomUUID();
      const token = await tokens.signAccess('alice', 'user');
      const cs = await clients(lb.wsUrl, sid, 6);
      // A device pinned to node 2 (no balancer, no reconnect) and a watcher on node 1.
      const pinned = await connectDevice(nodes[1].wsUrl);
      await pinned.auth({ token, device_id: 'pinned', session_id: sid });
      const watcher = await connectDevice(nodes[0].wsUrl);
      await watcher.auth({ token, device_id: 'watcher', session_id: sid });

      const load = writeLoad(cs, 60);
      await eventually(() => load.acked.n > 60, 20_000);
      nodes[1].kill('SIGKILL');
      const killedAt = Date.now();
      await expectNothingLost(load, cs, 6 * 60, nodes[0].url);
      // The dead node's device goes offline within the (shortened) presence timeout, announced by a survivor.
      const left = await watcher.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === 'pinned', 8000);
      expect(left.payload.reason).toBe('timeout');
      expect(Date.now() - killedAt).toBeLessThan(2000 + 3000);
      const list = await api(nodes[2].url, 'GET', `/session/${sid}/devices`, { token });
      expect(list.body.devices.find((d: { device_id: string }) => d.device_id === 'pinned').status).toBe('offline');
    } finally {
      await closeAllDevices();
      await lb.stop();
      await stopAll(nodes);
      await redis.stop();
    }
  }, 90_000);

  it('rolling restart (SIGTERM one node at a time, like kubectl rollout restart) loses no acknowledged update', async () => {
    const redis = await startRedis();
    const env = { REDIS_URL: redis.url, ...FAST, DRAIN_TIMEOUT_MS: '2000' };
    const ports = [await freePort(), await freePort()];
    let nodes = await Promise.all(ports.map((p, i) => spawnNode({ ...env, PORT: String(p), NODE_ID: `roll${i}`, LOG_LEVEL: 'warn' })));
    const lb = await startHaproxy(ports);
    try {
      const sid = randomUUID();
      const cs = await clients(lb.wsUrl, sid, 4);
      const load = writeLoad(cs, 80);
      for (let i = 0; i < nodes.length; i++) {
        await eventually(() => load.acked.n > 40 * (i + 1), 20_000);
        nodes[i].kill('SIGTERM');
        expect(await nodes[i].exited).toBe(0);
        nodes[i] = await spawnNode({ ...env, PORT: String(ports[i]), NODE_ID: `roll${i}b`, LOG_LEVEL: 'warn' });
      }
      await expectNothingLost(load, cs, 320, nodes[0].url);
    } finally {
      await lb.stop();
      await stopAll(nodes);
      await redis.stop();
    }
  }, 90_000);

  it('Redis restarted mid-stream: nodes answer 503 meanwhile, recover by themselves, clients resume, nothing acknowledged is lost', async () => {
    // fsync on every write, so a crash-restart keeps every acknowledged update (as a durable primary would).
    const redis = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
    const env = { REDIS_URL: redis.url, ...FAST };
    const nodes = await Promise.all([1, 2].map((i) => spawnNode({ ...env, NODE_ID: `r${i}`, LOG_LEVEL: 'warn' })));
    const lb = await startHaproxy(nodes.map((n) => n.port));
    try {
      const sid = randomUUID();
      const token = await tokens.signAccess('alice', 'user');
      const cs = await clients(lb.wsUrl, sid, 4);
      const load = writeLoad(cs, 50);
      await eventually(() => load.acked.n > 40, 20_000);
      await redis.kill();
      await eventually(async () => (await api(nodes[0].url, 'GET', '/ready')).status === 503, 5000);
      const during = await api(nodes[0].url, 'POST', '/session/snapshot', { token, body: { session_id: randomUUID(), state_data: {} } });
      expect(during.status).toBe(503);
      expect(during.body.error).toBe('store_unavailable');
      await new Promise((r) => setTimeout(r, 500));
      await redis.restart();
      await eventually(async () => (await api(nodes[0].url, 'GET', '/ready')).status === 200 && (await api(nodes[1].url, 'GET', '/ready')).status === 200, 15_000, 100);
      await expectNothingLost(load, cs, 200, nodes[1].url);
    } finally {
      await lb.stop();
      await stopAll(nodes);
      await redis.stop();
    }
  }, 90_000);
});
