import { randomUUID } from 'node:crypto';
import { BusKind, CloseCode, encodeControlFrame, MessageType as T } from '@harmonyflow/protocol';
import {
  api, closeAllDevices, connectDevice, eventually, spawnNode, startNode, startRedis, testTokens,
  type NodeProcess, type PrivateRedis, type StartedNode, type TestDevice,
} from '@harmonyflow/testkit';

/**
 * SPEC §9: presence counts never leak. A disconnect that fails during a Redis blip is reconciled
 * once Redis is back; a node that cannot leave the registry cleanly at shutdown is reaped by a
 * survivor instead of leaving its devices online for good.
 */
const tokens = testTokens();

describe('presence survives failed updates', () => {
  let redis: PrivateRedis;
  const started: StartedNode[] = [];
  const procs: NodeProcess[] = [];
  beforeEach(async () => {
    // Durable, so the blip loses no data (what is tested is the failed presence update itself).
    redis = await startRedis(['--appendonly', 'yes', '--appendfsync', 'always']);
  });
  afterEach(async () => {
    await closeAllDevices();
    for (const n of started.splice(0)) await n.stop().catch(() => undefined);
    for (const p of procs.splice(0)) {
      if (p.proc.exitCode === null && p.proc.signalCode === null) p.kill('SIGKILL');
      await p.exited;
    }
    await redis.stop();
  });

  async function node(nodeId: string, presenceTimeoutMs = 1200): Promise<StartedNode> {
    const n = await startNode({ REDIS_URL: redis.url, PRESENCE_TIMEOUT_MS: String(presenceTimeoutMs), NODE_ID: nodeId });
    started.push(n);
    return n;
  }

  /** In-process nodes and gateway processes share the test secrets. */
  async function join(n: { wsUrl: string }, deviceId: string, sid: string): Promise<TestDevice> {
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token: await tokens.signAccess('alice', 'user'), device_id: deviceId, session_id: sid });
    await d.next(T.SNAPSHOT_RESPONSE);
    return d;
  }

  async function status(n: StartedNode, sid: string): Promise<Record<string, string>> {
    const r = await api(n.url, 'GET', `/session/${sid}/devices`, { token: await n.token('alice') });
    return Object.fromEntries((r.body.devices ?? []).map((d: { device_id: string; status: string }) => [d.device_id, d.status]));
  }

  /** Nodes a and b on one session: `onA` devices joined on a (in order), then a watcher on b. */
  async function twoNodes(onA: string[], presenceTimeoutMs?: number) {
    const a = await node(`a-${randomUUID().slice(0, 4)}`, presenceTimeoutMs);
    const b = await node(`b-${randomUUID().slice(0, 4)}`, presenceTimeoutMs);
    const sid = randomUUID();
    const devices: TestDevice[] = [];
    for (const d of onA) devices.push(await join(a, d, sid));
    const watcher = await join(b, 'watcher', sid);
    return { a, b, sid, devices, watcher };
  }

  it('disconnects that failed while Redis was down are all reconciled: the devices go offline and the others hear it', async () => {
    // Node A must outlive the blip in B's eyes (dead after 3/4 of the presence timeout): with
    // 1.2 s, a blip of 1 s plus a slow restart had B reap A, and the devices left with 'timeout'.
    // Reconciliation runs every quarter of it.
    const { a, b, sid, devices: [phone, tablet], watcher } = await twoNodes(['phone', 'tablet'], 8000);
    await redis.kill();
    // The devices close while Redis is away: their disconnects fail, and so does at least one
    // round of reconciliation (each must keep every device it could not settle).
    await phone.close();
    await tablet.close();
    await new Promise((r) => setTimeout(r, 2500));
    await redis.restart();
    for (const id of ['phone', 'tablet']) {
      const left = await watcher.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === id, 10_000);
      expect(left.payload.reason).toBe('disconnected');
    }
    await eventually(async () => {
      const st = await status(b, sid);
      return st.phone === 'offline' && st.tablet === 'offline';
    }, 5000, 100);
    // Nothing counts the device any more: it joins and leaves normally afterwards.
    const before = watcher.frames.length;
    const again = await join(a, 'phone', sid);
    await watcher.waitFor((e) => e.type === T.DEVICE_JOINED, 5000, before);
    await again.close();
    await watcher.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === 'phone', 5000, before);
  }, 40_000);

  it('a node whose registry entry vanished while it was alive (reaped, its reap mark long gone) counts its devices again', async () => {
    const { a, b, sid, watcher } = await twoNodes(['phone']);
    // What a reaper does, minus the reap mark (it expires after a minute). Node A may re-register
    // at any moment after this, so the reap is checked by what it returned.
    expect(await b.node.presence.reapNode(a.node.instance, [sid], Date.now())).toEqual([{ sessionId: sid, deviceId: 'phone' }]);
    await b.node.registry.forget(a.node.instance);
    const joined = await watcher.waitFor((e) => e.type === T.DEVICE_JOINED && (e.payload.device as { device_id: string }).device_id === 'phone', 5000);
    expect(joined.payload.device).toMatchObject({ status: 'online' });
    await eventually(async () => (await status(b, sid)).phone === 'online', 5000, 100);
    expect(await b.node.registry.sessionsOf(a.node.instance)).toContain(sid);
  }, 30_000);

  it('a node that shuts down while Redis is away is reaped by a survivor: its devices go offline with DEVICE_LEFT timeout', async () => {
    const { a, b, sid, watcher } = await twoNodes(['phone']);
    await redis.kill();
    await a.stop(); // its disconnects and its clean leave both fail
    started.splice(started.indexOf(a), 1);
    await redis.restart();
    const left = await watcher.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === 'phone', 15_000);
    expect(left.payload.reason).toBe('timeout');
    await eventually(async () => (await status(b, sid)).phone === 'offline', 5000, 100);
  }, 40_000);

  it('a kicked device counted here again between the kicker\'s removal and the kick (a recount) is not left counted', async () => {
    const a = await node(`a-${randomUUID().slice(0, 4)}`);
    const sid = randomUUID();
    const phone = await join(a, 'phone', sid);
    const connections = async () => {
      const r = await api(a.url, 'GET', `/session/${sid}/devices`, { token: await a.token('alice') });
      return (r.body.devices as Array<{ device_id: string; connections: number }>).find((d) => d.device_id === 'phone')?.connections;
    };
    expect(await connections()).toBe(1);
    // The kicker's removal, a recount of this node landing right after it, then the kick itself.
    await a.node.presence.remove(sid, 'phone');
    await a.node.presence.setCount(sid, 'phone', a.node.instance, 1, Date.now());
    await a.node.bus.publish(sid, encodeControlFrame({ kind: BusKind.KICK, sessionId: sid, originNode: 'kicker', body: { device_id: 'phone' } }));
    await eventually(() => phone.closeCode !== null, 5000, 20);
    expect(phone.closeCode).toBe(CloseCode.KICKED);
    await eventually(async () => (await connections()) === 0, 5000, 100);
  });

  /**
   * A device's disconnect fails during a Redis blip, and a heartbeat after the blip runs before
   * the next reconciliation (the default presence timeout: reconciliation every 30 s, heartbeats
   * every 5 s). The session must stay in the instance's registry set until the device's count is
   * settled, whatever happens to the process next.
   */
  async function failedDisconnectThenBeat(): Promise<{ a: NodeProcess; aId: string; b: StartedNode; sid: string; watcher: TestDevice }> {
    const aId = `a-${randomUUID().slice(0, 4)}`;
    const env = { REDIS_URL: redis.url, PRESENCE_TIMEOUT_MS: '120000', LOG_LEVEL: 'warn' };
    const a = await spawnNode({ ...env, NODE_ID: aId });
    procs.push(a);
    const b = await startNode({ ...env, NODE_ID: `b-${randomUUID().slice(0, 4)}` });
    started.push(b);
    const sid = randomUUID();
    const phone = await join(a, 'phone', sid);
    const watcher = await join(b, 'watcher', sid);
    const health = async () => (await api(a.url, 'GET', '/health')).body as { redis: string; active_connections: number };
    await redis.kill();
    await eventually(async () => (await health()).redis === 'down', 5000, 50);
    await phone.close();
    await eventually(async () => (await health()).active_connections === 0, 5000, 50); // its disconnect was tried, and failed
    await redis.restart();
    const back = Date.now();
    await eventually(async () => {
      const { live } = await b.node.registry.list(Date.now());
      return live.some((n) => n.node_id === aId && n.updated_at > back + 100);
    }, 10_000, 100);
    expect((await status(b, sid)).phone).toBe('online'); // not reconciled yet
    return { a, aId, b, sid, watcher };
  }

  it('a failed disconnect, a heartbeat, then a crash: the restarted node takes over and the device goes offline with DEVICE_LEFT timeout', async () => {
    const { a, aId, b, sid, watcher } = await failedDisconnectThenBeat();
    const before = watcher.frames.length;
    a.kill('SIGKILL');
    await a.exited;
    procs.push(await spawnNode({ REDIS_URL: redis.url, PRESENCE_TIMEOUT_MS: '120000', LOG_LEVEL: 'warn', NODE_ID: aId }));
    const left = await watcher.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === 'phone', 5000, before);
    expect(left.payload.reason).toBe('timeout');
    expect((await status(b, sid)).phone).toBe('offline');
  }, 40_000);

  it('a failed disconnect, a heartbeat, then SIGTERM: the node settles the count before it leaves (DEVICE_LEFT disconnected)', async () => {
    const { a, b, sid, watcher } = await failedDisconnectThenBeat();
    const before = watcher.frames.length;
    a.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    const left = await watcher.waitFor((e) => e.type === T.DEVICE_LEFT && e.payload.device_id === 'phone', 5000, before);
    expect(left.payload.reason).toBe('disconnected');
    expect((await status(b, sid)).phone).toBe('offline');
  }, 40_000);
});
