import { randomUUID } from 'node:crypto';
import { MessageType as T, type Envelope } from '@harmonyflow/protocol';
import {
  api, closeAllDevices, connectDevice, eventually, freePort, spawnNode, testTokens, useRedisBackends,
  type NodeProcess, type RedisBackend, type TestDevice,
} from '@harmonyflow/testkit';

/**
 * SPEC §9 "Node incarnation": a node restarted under the same NODE_ID (a container restart in the
 * same pod) inherits nothing of its previous process. Real gateway processes on a real Redis and
 * Redis Cluster.
 */
// A presence timeout far beyond the test (heartbeats every 5 s, dead after 45 s): the surviving
// node cannot reap the killed process in time, so only the restarted node's takeover can.
const FAST = { WS_RATE_PER_SECOND: '100000', WS_RATE_BURST: '100000', PRESENCE_TIMEOUT_MS: '60000', LOG_LEVEL: 'warn' };
const tokens = testTokens();
const backends = useRedisBackends().map((b): [string, RedisBackend] => [b.name, b]);

/** A device's state built only from what it received: SNAPSHOT_RESPONSE, then STATE_UPDATEs in order. */
function mirror(frames: Envelope[], start: Record<string, unknown> = {}): Record<string, unknown> {
  let state: Record<string, unknown> = { ...start };
  for (const f of frames) {
    const p = f.payload as Record<string, unknown>;
    if (f.type === T.SNAPSHOT_RESPONSE) state = { ...(p.state_data as Record<string, unknown>) };
    if (f.type !== T.STATE_UPDATE) continue;
    if (p.operation === 'DELETE') delete state[p.key as string];
    else state[p.key as string] = p.value;
  }
  return state;
}

describe.each(backends)('node restarted under the same NODE_ID, over %s', (_name, backend) => {
  const procs: NodeProcess[] = [];
  afterAll(async () => {
    await closeAllDevices();
    for (const p of procs) if (p.proc.exitCode === null) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
  });

  async function start(nodeId: string, port?: number): Promise<NodeProcess> {
    const p = await spawnNode({ ...backend.env(), ...FAST, NODE_ID: nodeId, ...(port ? { PORT: String(port) } : {}) });
    procs.push(p);
    return p;
  }

  async function join(node: NodeProcess, deviceId: string, sid: string, extra: Record<string, unknown> = {}): Promise<{ d: TestDevice; ok: Envelope }> {
    const d = await connectDevice(node.wsUrl);
    const ok = await d.auth({ token: await tokens.signAccess('alice', 'user'), device_id: deviceId, session_id: sid, ...extra });
    return { d, ok };
  }

  it('fresh devices resume every key, the old incarnation\'s devices go offline, presence works normally after', async () => {
    const xId = `x-${randomUUID().slice(0, 6)}`;
    const xPort = await freePort();
    let x = await start(xId, xPort);
    const y = await start(`y-${randomUUID().slice(0, 6)}`);
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user');

    // The phone is the first connection of X's first process (connection #1), like the fresh device below.
    const { d: phone } = await join(x, 'phone', sid);
    const { d: tablet } = await join(x, 'tablet', sid);
    const { d: web } = await join(y, 'web', sid);
    const written: Record<string, unknown> = {};
    for (const [dev, keys] of [[phone, ['k1', 'k2', 'k3', 'k4']], [tablet, ['k5', 'k6']]] as const) {
      for (const k of keys) {
        written[k] = `${k}-${dev === phone ? 'phone' : 'tablet'}`;
        dev.send({ type: T.STATE_UPDATE, correlation_id: k, payload: { key: k, value: written[k], operation: 'SET' } });
        await dev.waitFor((e) => e.type === T.STATE_UPDATE_ACK && e.correlation_id === k);
      }
    }
    await web.waitFor(() => web.ofType(T.STATE_UPDATE).length === 6);

    // The old incarnation, and its connections once its heartbeat listed them, as the admin API shows them.
    const admin = await tokens.signAccess('root', 'admin');
    const nodesOn = async (n: NodeProcess) => (await api(n.url, 'GET', '/admin/metrics/connections', { token: admin })).body.nodes as Array<{ node_id: string; instance: string }>;
    const connsOn = async (n: NodeProcess) => (await api(n.url, 'GET', '/admin/connections?limit=500', { token: admin })).body.items as Array<{ conn_id: string }>;
    const oldInstance = (await nodesOn(y)).find((n) => n.node_id === xId)!.instance;
    const ofOld = (items: Array<{ conn_id: string }>) => items.filter((c) => c.conn_id.startsWith(`${oldInstance}/`));
    await eventually(async () => ofOld(await connsOn(y)).length === 2, 10_000, 200);

    x.kill('SIGKILL');
    await x.exited;
    const fromWeb = web.frames.length;
    x = await start(xId, xPort);
    const answered = Date.now();

    // Taken over at start: the previous process's devices are offline and announced as timed out.
    for (const id of ['phone', 'tablet']) {
      const left = await web.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === id, Math.max(0, answered + 2000 - Date.now()), fromWeb);
      expect(left.payload.reason).toBe('timeout');
    }
    // And nothing of it is listed any more, on either node.
    for (const n of [x, y]) {
      const nodes = await nodesOn(n);
      expect(nodes.some((i) => i.instance === oldInstance)).toBe(false);
      expect(nodes.filter((i) => i.node_id === xId)).toHaveLength(1);
      expect(ofOld(await connsOn(n))).toEqual([]);
    }
    const devices = await api(y.url, 'GET', `/session/${sid}/devices`, { token });
    const status = Object.fromEntries(devices.body.devices.map((d: { device_id: string; status: string }) => [d.device_id, d.status]));
    expect(status).toEqual({ phone: 'offline', tablet: 'offline', web: 'online' });

    const http = await api(y.url, 'GET', `/session/${sid}`, { token });
    expect(http.body.state_data).toEqual(written);

    // Connection #1 of the new process resumes from 0: it gets every update, the phone's included.
    const { d: fresh, ok } = await join(x, 'fresh-0', sid, { last_version: 0 });
    expect(ok.payload).toMatchObject({ resumed: true, version: 6, epoch: http.body.epoch });
    await fresh.waitFor(() => fresh.ofType(T.STATE_UPDATE).length === 6);
    expect(mirror(fresh.frames)).toEqual(http.body.state_data);

    // From the middle: state at version 3 plus the replay is the whole state.
    const { d: mid, ok: midOk } = await join(x, 'fresh-3', sid, { last_version: 3, last_epoch: http.body.epoch });
    expect(midOk.payload).toMatchObject({ resumed: true, version: 6 });
    await mid.waitFor(() => mid.ofType(T.STATE_UPDATE).length === 3);
    expect(mid.ofType(T.STATE_UPDATE).map((e) => e.payload.version)).toEqual([4, 5, 6]);
    expect(mirror(mid.frames, { k1: written.k1, k2: written.k2, k3: written.k3 })).toEqual(http.body.state_data);

    // Presence works normally for the new process: a device comes back and leaves.
    const before = web.frames.length;
    const { d: phone2 } = await join(x, 'phone', sid);
    expect((await web.waitFor((e) => e.type === T.DEVICE_JOINED && (e.payload.device as { device_id: string }).device_id === 'phone', 5000, before)).payload.device)
      .toMatchObject({ status: 'online', node_id: xId });
    await phone2.close();
    expect((await web.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === 'phone', 5000, before)).payload.reason).toBe('disconnected');
    // And writes through the new process reach the other node, at the next version.
    fresh.send({ type: T.STATE_UPDATE, correlation_id: 'k7', payload: { key: 'k7', value: 7, operation: 'SET' } });
    expect((await fresh.next(T.STATE_UPDATE_ACK)).payload.version).toBe(7);
    expect((await web.waitFor((e) => e.type === T.STATE_UPDATE && e.payload.key === 'k7')).payload.version).toBe(7);
  }, 60_000);
});
