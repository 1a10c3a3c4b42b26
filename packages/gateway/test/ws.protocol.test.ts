import { randomUUID } from 'node:crypto';
import { MessageType as T, type Envelope } from '@harmonyflow/protocol';
import {
  api, closeAllDevices, connectDevice, eventually, sleep, startNode, useNode, useRedis, type StartedNode,
} from '@harmonyflow/testkit';

const redis = useRedis();
afterEach(closeAllDevices);

const stores: Array<[string, () => Record<string, string>]> = [
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url, REDIS_PREFIX: `w${randomUUID().slice(0, 6)}:` })],
];

describe.each(stores)('WebSocket protocol (%s)', (_name, storeEnv) => {
  const started = useNode(() => ({ AUTH_TIMEOUT_MS: '400', TOKEN_GRACE_MS: '400', MAX_MESSAGE_BYTES: '4096', WS_RATE_PER_SECOND: '50', WS_RATE_BURST: '60', ...storeEnv() }));
  let n: StartedNode;
  let aliceToken: string;
  beforeAll(async () => {
    n = started();
    aliceToken = await n.token('alice');
  });

  async function device(deviceId: string, sessionId: string, opts: { token?: string; codec?: 'json' | 'proto'; extra?: Record<string, unknown> } = {}) {
    const d = await connectDevice(n.wsUrl, { codec: opts.codec });
    const ok = await d.auth({ token: opts.token ?? aliceToken, device_id: deviceId, session_id: sessionId, device_type: 'mobile', device_name: deviceId, ...opts.extra });
    return { d, ok };
  }

  describe('connection lifecycle', () => {
    it('AUTH → AUTH_SUCCESS with the SPEC fields, then SNAPSHOT_RESPONSE', async () => {
      const sid = randomUUID();
      const { d, ok } = await device('phone', sid);
      expect(ok.payload).toMatchObject({
        session_id: sid, user_id: 'alice', device_id: 'phone', node_id: n.node.config.nodeId, version: 0, resumed: false,
        last_mutation_id: 0, max_message_bytes: n.node.config.maxMessageBytes,
      });
      expect(ok.payload.epoch).toMatch(/^[A-Za-z0-9_-]{12,}$/);
      expect(typeof ok.payload.heartbeat_interval_ms).toBe('number');
      expect((ok.payload.devices as { device_id: string }[]).map((x) => x.device_id)).toEqual(['phone']);
      const snap = await d.next(T.SNAPSHOT_RESPONSE);
      expect(snap.payload).toMatchObject({ session_id: sid, version: 0, state_data: {}, epoch: ok.payload.epoch });
      expect(d.frames.findIndex((f) => f.type === T.AUTH_SUCCESS)).toBeLessThan(d.frames.findIndex((f) => f.type === T.SNAPSHOT_RESPONSE));
    });

    it('accepts ?token= with the AUTH fields as query parameters', async () => {
      const sid = randomUUID();
      const d = await connectDevice(n.wsUrl, { query: { token: aliceToken, device_id: 'web', session_id: sid } });
      const ok = await d.next(T.AUTH_SUCCESS);
      expect(ok.payload).toMatchObject({ session_id: sid, device_id: 'web' });
      await d.next(T.SNAPSHOT_RESPONSE);
    });

    it('closes 4401 without AUTH in time, with a bad token, and on a foreign session (4403)', async () => {
      const silent = await connectDevice(n.wsUrl);
      expect(await silent.closed).toBe(4401);
      expect(silent.ofType(T.AUTH_FAILURE)[0].payload).toMatchObject({ code: 'not_authenticated' });

      const bad = await connectDevice(n.wsUrl);
      bad.send({ type: T.AUTH, payload: { token: 'garbage', device_id: 'x' } });
      expect(await bad.closed).toBe(4401);
      expect(bad.ofType(T.AUTH_FAILURE)).toHaveLength(1);

      const sid = randomUUID();
      await device('phone', sid);
      const intruder = await connectDevice(n.wsUrl);
      intruder.send({ type: T.AUTH, payload: { token: await n.token('mallory'), device_id: 'm', session_id: sid } });
      expect(await intruder.closed).toBe(4403);
      expect(intruder.ofType(T.AUTH_FAILURE)[0].payload).toMatchObject({ code: 'forbidden' });
      const admin = await connectDevice(n.wsUrl);
      await admin.auth({ token: await n.token('root', 'admin'), device_id: 'console', session_id: sid });
    });

    it('with ?token=, frames sent right after the socket opens wait for authentication instead of failing', async () => {
      for (let i = 0; i < 5; i++) {
        const sid = randomUUID();
        const d = await connectDevice(n.wsUrl, { query: { token: aliceToken, device_id: `q${i}`, session_id: sid } });
        d.send({ type: T.HEARTBEAT, payload: { client_time: i }, correlation_id: 'hb' });
        d.send({ type: T.STATE_UPDATE, correlation_id: 'w', payload: { key: 'k', value: i, operation: 'SET' } });
        expect((await d.next(T.STATE_UPDATE_ACK)).payload).toMatchObject({ correlation_id: 'w', version: 1 });
        expect(d.ofType(T.HEARTBEAT_ACK)).toHaveLength(1);
        expect(d.frames.map((f) => f.type).slice(0, 2)).toEqual([T.AUTH_SUCCESS, T.SNAPSHOT_RESPONSE]);
        expect(d.ofType(T.ERROR)).toHaveLength(0);
        expect(d.closeCode).toBeNull();
      }
    });

    it('joins the user\'s most recent session without session_id, or a new one', async () => {
      const token = await n.token(`u-${randomUUID()}`);
      const first = await connectDevice(n.wsUrl);
      const a = await first.auth({ token, device_id: 'd1' });
      expect(typeof a.payload.session_id).toBe('string');
      const second = await connectDevice(n.wsUrl);
      const b = await second.auth({ token, device_id: 'd2' });
      expect(b.payload.session_id).toBe(a.payload.session_id);
    });

    it('HEARTBEAT → HEARTBEAT_ACK with client_time and server_time', async () => {
      const { d } = await device('phone', randomUUID());
      d.send({ type: T.HEARTBEAT, payload: { client_time: 12345 } });
      const ack = await d.next(T.HEARTBEAT_ACK);
      expect(ack.payload.client_time).toBe(12345);
      expect(Math.abs((ack.payload.server_time as number) - Date.now())).toBeLessThan(5000);
    });

    it('re-AUTH refreshes the token; an expired token gets ERROR token_expired then 4401 after the grace', async () => {
      const sid = randomUUID();
      const short = await n.token('alice', 'user', 2); // JWT exp has 1 s granularity: 2 s is 1-2 s from now
      const { d } = await device('phone', sid, { token: short });
      const expired = await d.waitFor((e) => e.type === T.ERROR && e.payload.code === 'token_expired', 5000);
      expect(expired).toBeDefined();
      const from = d.frames.length;
      d.send({ type: T.AUTH, payload: { token: aliceToken, device_id: 'phone', session_id: sid } });
      await d.next(T.AUTH_SUCCESS, 3000, from);
      // Past the grace the expired token had (400 ms, checked every 100 ms), the socket still works.
      await sleep(1000);
      expect(d.closeCode).toBeNull();
      const later = d.frames.length;
      d.send({ type: T.HEARTBEAT, correlation_id: 'after-grace', payload: {} });
      expect((await d.next(T.HEARTBEAT_ACK, 3000, later)).correlation_id).toBe('after-grace');
      expect(d.closeCode).toBeNull();

      const { d: lazy } = await device('tablet', sid, { token: await n.token('alice', 'user', 2) });
      expect(await lazy.closed).toBe(4401);
      expect(lazy.frames.some((f) => f.type === T.ERROR && f.payload.code === 'token_expired')).toBe(true);
    });
  });

  describe('state updates', () => {
    it('SET / INCREMENT / DELETE: ACK to the writer, one STATE_UPDATE to every other device', async () => {
      const sid = randomUUID();
      const { d: phone } = await device('phone', sid);
      const { d: tablet } = await device('tablet', sid);
      const { d: web } = await device('web', sid, { codec: 'proto' });
      await Promise.all([phone, tablet, web].map((d) => d.next(T.SNAPSHOT_RESPONSE)));

      phone.send({ type: T.STATE_UPDATE, correlation_id: 'k1', payload: { key: 'mood', value: 'calm', operation: 'SET' } });
      const ack = await phone.next(T.STATE_UPDATE_ACK);
      expect(ack.payload).toMatchObject({ correlation_id: 'k1', version: 1 });
      expect(ack.correlation_id).toBe('k1');
      for (const d of [tablet, web]) {
        const u = await d.next(T.STATE_UPDATE);
        expect(u.payload).toMatchObject({ key: 'mood', value: 'calm', operation: 'SET', version: 1, device_id: 'phone' });
      }
      tablet.send({ type: T.STATE_UPDATE, correlation_id: 'k2', payload: { key: 'minutes', value: 5, operation: 'INCREMENT' } });
      expect((await tablet.next(T.STATE_UPDATE_ACK)).payload).toMatchObject({ version: 2 });
      expect((await phone.waitFor((e) => e.type === T.STATE_UPDATE && e.payload.version === 2)).payload).toMatchObject({ key: 'minutes', value: 5, delta: 5, operation: 'INCREMENT', device_id: 'tablet' });
      web.send({ type: T.STATE_UPDATE, correlation_id: 'k3', payload: { key: 'mood', operation: 'DELETE' } });
      expect((await web.next(T.STATE_UPDATE_ACK)).payload).toMatchObject({ version: 3, correlation_id: 'k3' });
      const del = await phone.waitFor((e) => e.type === T.STATE_UPDATE && e.payload.version === 3);
      expect(del.payload).toMatchObject({ key: 'mood', operation: 'DELETE', device_id: 'web' });
      await tablet.waitFor((e) => e.type === T.STATE_UPDATE && e.payload.version === 3);
      // The writer never receives its own update.
      expect(phone.ofType(T.STATE_UPDATE).map((e) => e.payload.version)).toEqual([2, 3]);
      expect(tablet.ofType(T.STATE_UPDATE).map((e) => e.payload.version)).toEqual([1, 3]);
      expect(web.ofType(T.STATE_UPDATE).map((e) => e.payload.version)).toEqual([1, 2]);
      const got = await api(n.url, 'GET', `/session/${sid}`, { token: aliceToken });
      expect(got.body.state_data).toEqual({ minutes: 5 });
    });

    it('ERROR version_conflict for a stale base_version touching a changed key; rebases otherwise', async () => {
      const sid = randomUUID();
      const { d } = await device('phone', sid);
      d.send({ type: T.STATE_UPDATE, correlation_id: 'a', payload: { key: 'a', value: 1, operation: 'SET' } });
      d.send({ type: T.STATE_UPDATE, correlation_id: 'b', payload: { key: 'b', value: 1, operation: 'SET' } });
      await d.waitFor((e) => e.type === T.STATE_UPDATE_ACK && e.payload.version === 2);
      d.send({ type: T.STATE_UPDATE, correlation_id: 'c', payload: { key: 'a', value: 9, operation: 'SET', base_version: 0 } });
      const err = await d.next(T.ERROR);
      expect(err.payload).toMatchObject({ code: 'version_conflict', correlation_id: 'c', current_version: 2, conflicting_keys: ['a'] });
      d.send({ type: T.STATE_UPDATE, correlation_id: 'd', payload: { key: 'z', value: 9, operation: 'SET', base_version: 1 } });
      expect((await d.waitFor((e) => e.type === T.STATE_UPDATE_ACK && e.payload.correlation_id === 'd')).payload.version).toBe(3);
    });

    it('a retried STATE_UPDATE (same device and correlation_id) is acknowledged again but applied once', async () => {
      const sid = randomUUID();
      const { d } = await device('phone', sid);
      d.send({ type: T.STATE_UPDATE, correlation_id: 'retry-1', payload: { key: 'n', value: 1, operation: 'INCREMENT' } });
      const first = await d.next(T.STATE_UPDATE_ACK);
      const from = d.frames.length;
      d.send({ type: T.STATE_UPDATE, correlation_id: 'retry-1', payload: { key: 'n', value: 1, operation: 'INCREMENT' } });
      const again = await d.next(T.STATE_UPDATE_ACK, 3000, from);
      expect(again.payload.version).toBe(first.payload.version);
      expect((await api(n.url, 'GET', `/session/${sid}`, { token: aliceToken })).body).toMatchObject({ version: 1, state_data: { n: 1 } });
    });

    it('HTTP mutations reach connected devices: snapshot and merge as SNAPSHOT_RESPONSE, incremental as PATCH', async () => {
      const sid = randomUUID();
      const { d } = await device('phone', sid);
      await d.next(T.SNAPSHOT_RESPONSE);
      const from = d.frames.length;
      await api(n.url, 'POST', '/session/snapshot', { token: aliceToken, body: { session_id: sid, state_data: { a: 1 }, version: 1 } });
      expect((await d.next(T.SNAPSHOT_RESPONSE, 5000, from)).payload).toMatchObject({ version: 1, state_data: { a: 1 } });
      await api(n.url, 'POST', '/session/incremental', { token: aliceToken, body: { session_id: sid, base_version: 1, changes: { b: 2 }, deleted_keys: ['a'], device_id: 'web' } });
      expect((await d.next(T.STATE_UPDATE, 5000, from)).payload).toEqual({ operation: 'PATCH', changes: { b: 2 }, deleted_keys: ['a'], version: 2, device_id: 'web' });
      await api(n.url, 'POST', '/session/conflict/resolve', { token: aliceToken, body: { session_id: sid, client_state: { c: 3 }, resolution_strategy: 'merge' } });
      expect((await d.waitFor((e) => e.type === T.SNAPSHOT_RESPONSE && e.payload.version === 3, 5000, from)).payload.state_data).toEqual({ b: 2, c: 3 });
      const asked = d.frames.length;
      d.send({ type: T.SNAPSHOT_REQUEST, payload: {} });
      const fresh = await d.next(T.SNAPSHOT_RESPONSE, 5000, asked);
      expect(fresh.payload).toMatchObject({ version: 3, state_data: { b: 2, c: 3 } });
    });

    it('resumes with last_version: replays exactly the missed updates (resumed:true)', async () => {
      const sid = randomUUID();
      const { d: writer } = await device('phone', sid);
      for (let i = 0; i < 5; i++) writer.send({ type: T.STATE_UPDATE, correlation_id: `w${i}`, payload: { key: 'n', value: 1, operation: 'INCREMENT' } });
      await writer.waitFor((e) => e.type === T.STATE_UPDATE_ACK && e.payload.version === 5);
      const { d: back, ok } = await device('tablet', sid, { extra: { last_version: 2 } });
      expect(ok.payload).toMatchObject({ resumed: true, version: 5 });
      await back.waitFor((e) => e.type === T.STATE_UPDATE && e.payload.version === 5);
      expect(back.ofType(T.STATE_UPDATE).map((e) => e.payload.version)).toEqual([3, 4, 5]);
      expect(back.ofType(T.SNAPSHOT_RESPONSE)).toHaveLength(0);
      const { d: far, ok: farOk } = await device('web', sid, { extra: { last_version: 99 } });
      expect(farOk.payload.resumed).toBe(false);
      expect((await far.next(T.SNAPSHOT_RESPONSE)).payload).toMatchObject({ version: 5, state_data: { n: 5 } });
    });

    it('resumes only within the same epoch: a foreign last_epoch gets a snapshot (resumed:false), the right one a replay', async () => {
      const sid = randomUUID();
      const { d: writer, ok: first } = await device('phone', sid);
      const epoch = first.payload.epoch as string;
      for (let i = 0; i < 4; i++) writer.send({ type: T.STATE_UPDATE, correlation_id: `w${i}`, payload: { key: `k${i}`, value: i, operation: 'SET' } });
      await writer.waitFor((e) => e.type === T.STATE_UPDATE_ACK && e.payload.version === 4);
      const { d: foreign, ok: foreignOk } = await device('tablet', sid, { extra: { last_version: 2, last_epoch: 'some-other-epoch-0' } });
      expect(foreignOk.payload).toMatchObject({ resumed: false, version: 4, epoch });
      expect((await foreign.next(T.SNAPSHOT_RESPONSE)).payload).toMatchObject({ version: 4, epoch, state_data: { k0: 0, k1: 1, k2: 2, k3: 3 } });
      expect(foreign.ofType(T.STATE_UPDATE)).toHaveLength(0);
      const { d: same, ok: sameOk } = await device('web', sid, { extra: { last_version: 2, last_epoch: epoch } });
      expect(sameOk.payload).toMatchObject({ resumed: true, version: 4, epoch });
      await same.waitFor(() => same.ofType(T.STATE_UPDATE).length === 2);
      expect(same.ofType(T.STATE_UPDATE).map((e) => e.payload.key)).toEqual(['k2', 'k3']);
      expect(same.ofType(T.SNAPSHOT_RESPONSE)).toHaveLength(0);
    });
  });

  describe('ordering under concurrency', () => {
    it('a device joining (with or without last_version) while updates stream in sees each version at most once, in order, with no gap', async () => {
      const sid = randomUUID();
      const { d: writer } = await device('writer', sid);
      const TOTAL = 55; // within this node's rate-limit burst
      for (let k = 0; k < TOTAL; k++) writer.send({ type: T.STATE_UPDATE, correlation_id: `r${k}`, payload: { key: 'n', value: 1, operation: 'INCREMENT' } });
      const late = await Promise.all([0, 1, 2, 3].map(async (i) => {
        await new Promise((r) => setTimeout(r, 5 * i));
        const { d, ok } = await device(`late-${i}`, sid, { extra: i % 2 ? { last_version: 1 } : {} });
        void ok;
        return { d, start: ok.payload.version as number };
      }));
      await writer.waitFor(() => writer.ofType(T.STATE_UPDATE_ACK).length === TOTAL, 20_000);
      for (const { d } of late) {
        const seen = await eventually(() => {
          const versions = d.frames.filter((f) => f.type === T.STATE_UPDATE || f.type === T.SNAPSHOT_RESPONSE).map((f) => f.payload.version as number);
          return versions[versions.length - 1] === TOTAL ? versions : null;
        }, 10_000);
        // A snapshot starts the stream (or a replay does); after that, every version exactly once.
        for (let i = 1; i < seen.length; i++) expect(seen[i]).toBe(seen[i - 1] + 1);
      }
    }, 30_000);
  });

  describe('devices, presence, kick, handoff', () => {
    it('DEVICE_JOINED on a device\'s first connection only, DEVICE_LEFT on its last; DEVICE_LIST and GET devices', async () => {
      const sid = randomUUID();
      const { d: phone } = await device('phone', sid);
      const { d: tablet1 } = await device('tablet', sid, { extra: { os_version: '17.1', app_version: '2.1.0' } });
      const joined = await phone.next(T.DEVICE_JOINED);
      expect(joined.payload.device).toMatchObject({ device_id: 'tablet', device_type: 'mobile', os_version: '17.1', status: 'online' });
      const { d: tablet2 } = await device('tablet', sid);
      phone.send({ type: T.DEVICE_LIST, payload: {} });
      const list = await phone.next(T.DEVICE_LIST);
      const tablet = (list.payload.devices as Array<Record<string, unknown>>).find((x) => x.device_id === 'tablet');
      expect(tablet).toMatchObject({ status: 'online', connections: 2 });
      expect(phone.ofType(T.DEVICE_JOINED)).toHaveLength(1);
      await tablet1.close();
      await tablet2.close();
      const left = await phone.next(T.DEVICE_LEFT);
      expect(left.payload).toEqual({ device_id: 'tablet', reason: 'disconnected' });
      expect(phone.ofType(T.DEVICE_LEFT)).toHaveLength(1);
      const http = await api(n.url, 'GET', `/session/${sid}/devices`, { token: aliceToken });
      expect(http.status).toBe(200);
      const byId = Object.fromEntries((http.body.devices as Array<{ device_id: string; status: string }>).map((x) => [x.device_id, x]));
      expect(byId.phone).toMatchObject({ status: 'online', node_id: n.node.config.nodeId });
      expect(byId.tablet).toMatchObject({ status: 'offline' });
      expect(typeof (byId.tablet as unknown as { last_seen: string }).last_seen).toBe('string');
      expect((await api(n.url, 'GET', `/session/${sid}/devices`, { token: await n.token('bob') })).status).toBe(404);
    });

    it('DELETE …/device/:id closes that device with 4000 and tells the others DEVICE_LEFT kicked', async () => {
      const sid = randomUUID();
      const { d: phone } = await device('phone', sid);
      const { d: tablet } = await device('tablet', sid);
      const r = await api(n.url, 'DELETE', `/session/${sid}/device/tablet`, { token: aliceToken });
      expect(r.status).toBe(204);
      expect(await tablet.closed).toBe(4000);
      expect((await phone.next(T.DEVICE_LEFT)).payload).toEqual({ device_id: 'tablet', reason: 'kicked' });
      expect((await api(n.url, 'DELETE', `/session/${sid}/device/tablet`, { token: aliceToken })).status).toBe(404);
      const list = await api(n.url, 'GET', `/session/${sid}/devices`, { token: aliceToken });
      expect(list.body.devices.map((x: { device_id: string }) => x.device_id)).toEqual(['phone']);
    });

    it('handoff: HANDOFF_REQUESTED to the target, state by token once (then 410), HANDOFF_COMPLETED to the source', async () => {
      const sid = randomUUID();
      const { d: phone } = await device('phone', sid);
      const { d: tablet } = await device('tablet', sid);
      phone.send({ type: T.STATE_UPDATE, payload: { key: 'progress', value: 42, operation: 'SET' } });
      await phone.next(T.STATE_UPDATE_ACK);
      const created = await api(n.url, 'POST', `/session/${sid}/handoff`, { token: aliceToken, body: { source_device: 'phone', target_device: 'tablet' } });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ source_device: 'phone', target_device: 'tablet' });
      expect(created.body.token).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      expect(Buffer.from(created.body.token, 'base64url').length).toBeGreaterThanOrEqual(16);
      expect(Date.parse(created.body.expires_at) - Date.now()).toBeGreaterThan(290_000);
      const req = await tablet.next(T.HANDOFF_REQUESTED);
      expect(req.payload).toMatchObject({ token: created.body.token, source_device: 'phone' });
      expect(phone.ofType(T.HANDOFF_REQUESTED)).toHaveLength(0);
      const got = await api(n.url, 'GET', `/session/${sid}/handoff/${created.body.token}`, { token: aliceToken });
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ valid: true, state_data: { progress: 42 }, version: 1, source_device: 'phone', target_device: 'tablet' });
      expect((await phone.next(T.HANDOFF_COMPLETED)).payload).toEqual({ target_device: 'tablet' });
      const again = await api(n.url, 'GET', `/session/${sid}/handoff/${created.body.token}`, { token: aliceToken });
      expect(again.status).toBe(410);
      expect(again.body.error).toBe('handoff_token_used');
      expect((await api(n.url, 'GET', `/session/${sid}/handoff/${'A'.repeat(32)}`, { token: aliceToken })).status).toBe(404);
      // Any target: picking the session up on a device that never joined is what a handoff is for.
      expect((await api(n.url, 'POST', `/session/${sid}/handoff`, { token: aliceToken, body: { source_device: 'phone', target_device: 'ghost' } })).status).toBe(201);
      expect((await api(n.url, 'POST', `/session/${sid}/handoff`, { token: aliceToken, body: { source_device: 'phone', target_device: 'x'.repeat(129) } })).status).toBe(400);
      // The source leaving after a completed handoff is announced as such.
      await phone.close();
      expect((await tablet.next(T.DEVICE_LEFT)).payload).toEqual({ device_id: 'phone', reason: 'handoff' });
    });
  });

  describe('admin', () => {
    it('POST /admin/broadcast reaches every device (BROADCAST) and admin sockets (ADMIN_UPDATE); 403 for users', async () => {
      const { d: user } = await device('phone', randomUUID());
      const { d: admin } = await device('console', randomUUID(), { token: await n.token('root', 'admin') });
      expect((await api(n.url, 'POST', '/admin/broadcast', { token: aliceToken, body: { message: 'x', type: 'notification' } })).status).toBe(403);
      const r = await api(n.url, 'POST', '/admin/broadcast', { token: await n.token('root', 'admin'), body: { message: 'maintenance at 3', type: 'notification' } });
      expect(r.status).toBe(202);
      expect((await user.next(T.BROADCAST)).payload).toEqual({ message: 'maintenance at 3', type: 'notification' });
      await admin.next(T.BROADCAST);
      expect((await admin.next(T.ADMIN_UPDATE)).payload).toMatchObject({ event: 'broadcast', message: 'maintenance at 3' });
      expect(user.ofType(T.ADMIN_UPDATE)).toHaveLength(0);
      // Periodic cluster metrics to admin sockets.
      const periodic = await admin.waitFor((e) => e.type === T.ADMIN_UPDATE && (e.payload as { connections?: unknown }).connections !== undefined, 8000);
      expect(periodic.payload).toMatchObject({ connections: { active_connections: expect.any(Number) }, sessions: {}, snapshots: {} });
    }, 15000);

    it('session-scoped broadcast reaches only that session', async () => {
      const sid = randomUUID();
      const { d: inside } = await device('phone', sid);
      const { d: outside } = await device('phone', randomUUID());
      const r = await api(n.url, 'POST', '/admin/broadcast', { token: await n.token('root', 'admin'), body: { message: 'hello', type: 'info', session_id: sid } });
      expect(r.status).toBe(202);
      expect((await inside.next(T.BROADCAST)).payload).toEqual({ message: 'hello', type: 'info' });
      inside.send({ type: T.HEARTBEAT, payload: {} });
      outside.send({ type: T.HEARTBEAT, payload: {} });
      await inside.next(T.HEARTBEAT_ACK);
      await outside.next(T.HEARTBEAT_ACK);
      expect(outside.ofType(T.BROADCAST)).toHaveLength(0);
    });

    it('admin metrics and lists have the SPEC shapes', async () => {
      const admin = await n.token('root', 'admin');
      await device('phone', randomUUID());
      const all = await eventually(async () => {
        const r = await api(n.url, 'GET', '/admin/metrics/all', { token: admin });
        return r.body.connections.active_connections >= 1 ? r : null;
      }, 8000, 100);
      expect(all.body).toMatchObject({ sessions: { active_sessions: expect.any(Number) }, connections: { nodes: [{ node_id: n.node.config.nodeId }] }, snapshots: { writes_total: expect.any(Number), reads_total: expect.any(Number) } });
      for (const p of ['sessions', 'connections', 'snapshots']) expect((await api(n.url, 'GET', `/admin/metrics/${p}`, { token: admin })).status).toBe(200);
      const page1 = await api(n.url, 'GET', '/admin/sessions?limit=2', { token: admin });
      expect(page1.body.items).toHaveLength(2);
      expect(typeof page1.body.next_cursor).toBe('string');
      const page2 = await api(n.url, 'GET', `/admin/sessions?limit=2&cursor=${page1.body.next_cursor}`, { token: admin });
      expect(page2.body.items.length).toBeGreaterThanOrEqual(1);
      for (const item of page2.body.items) expect(page1.body.items.map((x: { session_id: string }) => x.session_id)).not.toContain(item.session_id);
      const conns = await api(n.url, 'GET', '/admin/connections?limit=500', { token: admin });
      expect(conns.body).toMatchObject({ next_cursor: null });
      expect(conns.body.items.length).toBeGreaterThanOrEqual(1);
      expect((await api(n.url, 'GET', '/admin/sessions?limit=0', { token: admin })).status).toBe(400);
      expect((await api(n.url, 'GET', '/admin/metrics/all', { token: aliceToken })).status).toBe(403);
      const page = await api(n.url, 'GET', '/admin/');
      expect(page.status).toBe(200);
      expect(page.body).toContain('<html');
    });
  });

  describe('abuse and limits', () => {
    it('a malformed frame gets ERROR invalid_message and the connection stays usable; repeated garbage closes 4400', async () => {
      const { d } = await device('phone', randomUUID());
      d.sendRaw('{"type":');
      expect((await d.next(T.ERROR)).payload.code).toBe('invalid_message');
      d.send({ type: 99 as T, payload: {} });
      expect((await d.waitFor((e) => e.type === T.ERROR && e.payload.code === 'unknown_type')).payload.code).toBe('unknown_type');
      d.send({ type: T.STATE_UPDATE, payload: { key: '', operation: 'SET', value: 1 } });
      d.send({ type: T.STATE_UPDATE, payload: { key: 'a', operation: 'EXPLODE' } });
      d.send({ type: T.AUTH_SUCCESS, payload: {} });
      d.send({ type: T.HEARTBEAT, payload: {} });
      await d.next(T.HEARTBEAT_ACK);
      for (let i = 0; i < 30; i++) d.sendRaw(`garbage ${i}`);
      expect(await d.closed).toBe(4400);
    });

    it('a correlation_id outside 1-128 well-formed characters gets ERROR invalid_message on any frame, never echoed', async () => {
      const { d } = await device('phone', randomUUID());
      const bad = ['c'.repeat(129), '', 'a\ud800b'];
      const frames = [
        ...bad.map((corr) => () => d.send({ type: T.HEARTBEAT, correlation_id: corr, payload: { client_time: 1 } })),
        () => d.send({ type: T.DEVICE_LIST, correlation_id: 'd'.repeat(129), payload: {} }),
        () => d.send({ type: T.AUTH, correlation_id: 'x'.repeat(129), payload: { token: aliceToken, device_id: 'phone' } }),
        () => d.send({ type: 99 as T, correlation_id: 'u'.repeat(129), payload: {} }),
      ];
      for (const sendIt of frames) {
        const from = d.frames.length;
        sendIt();
        const err = await d.next(T.ERROR, 5000, from);
        expect(err.payload.code).toMatch(/^(invalid_message|unknown_type)$/);
        expect(err.correlation_id).toBeUndefined();
        expect(err.payload.correlation_id).toBeUndefined();
      }
      // The refused frames were not processed: no reply but the ERRORs, and the connection still works.
      d.send({ type: T.HEARTBEAT, correlation_id: 'c'.repeat(128), payload: { client_time: 2 } });
      const ack = await d.next(T.HEARTBEAT_ACK);
      expect(ack.correlation_id).toBe('c'.repeat(128));
      expect(d.ofType(T.HEARTBEAT_ACK)).toHaveLength(1);
      expect(d.ofType(T.DEVICE_LIST)).toHaveLength(0);
      expect(d.ofType(T.AUTH_SUCCESS)).toHaveLength(1);
      expect(d.closeCode).toBeNull();

      // As the first frame: AUTH_FAILURE and 4401, as for any first frame that is not a valid AUTH.
      const fresh = await connectDevice(n.wsUrl);
      fresh.send({ type: T.AUTH, correlation_id: 'x'.repeat(129), payload: { token: aliceToken, device_id: 'phone' } });
      expect(await fresh.closed).toBe(4401);
      expect(fresh.frames).toHaveLength(1);
      expect(fresh.frames[0]).toMatchObject({ type: T.AUTH_FAILURE, payload: { code: 'invalid_message' } });
      expect(fresh.frames[0].correlation_id).toBeUndefined();
      // A first frame that is not AUTH is refused as that (SPEC §3), whatever its correlation id.
      const early = await connectDevice(n.wsUrl);
      early.send({ type: T.HEARTBEAT, correlation_id: 'x'.repeat(129), payload: { client_time: 1 } });
      expect(await early.closed).toBe(4401);
      expect(early.frames).toHaveLength(1);
      expect(early.frames[0]).toMatchObject({ type: T.AUTH_FAILURE, payload: { code: 'not_authenticated' } });
      expect(early.frames[0].correlation_id).toBeUndefined();
    });

    it('a frame above MAX_MESSAGE_BYTES gets ERROR payload_too_large and close 1009', async () => {
      const { d } = await device('phone', randomUUID());
      d.send({ type: T.STATE_UPDATE, payload: { key: 'big', operation: 'SET', value: 'x'.repeat(5000) } });
      expect(await d.closed).toBe(1009);
      expect(d.ofType(T.ERROR)[0].payload.code).toBe('payload_too_large');
    });

    it('rate limits with ERROR rate_limited, then 4429 if it goes on', async () => {
      const { d } = await device('phone', randomUUID());
      for (let i = 0; i < 200; i++) d.send({ type: T.HEARTBEAT, payload: {} });
      await d.waitFor((e) => e.type === T.ERROR && e.payload.code === 'rate_limited');
      expect(await d.closed).toBe(4429);
    });
  });
});

describe('presence timeout and drain', () => {
  it('a silent device turns offline after PRESENCE_TIMEOUT_MS and the others get DEVICE_LEFT timeout', async () => {
    const n = await startNode({ PRESENCE_TIMEOUT_MS: '600' });
    try {
      const token = await n.token('alice');
      const sid = randomUUID();
      const chatty = await connectDevice(n.wsUrl);
      await chatty.auth({ token, device_id: 'phone', session_id: sid });
      const quiet = await connectDevice(n.wsUrl);
      await quiet.auth({ token, device_id: 'tablet', session_id: sid });
      const beat = setInterval(() => chatty.send({ type: T.HEARTBEAT, payload: {} }), 100);
      try {
        const left = await chatty.waitFor((e) => e.type === T.DEVICE_LEFT, 5000);
        expect(left.payload).toEqual({ device_id: 'tablet', reason: 'timeout' });
        const list = await api(n.url, 'GET', `/session/${sid}/devices`, { token });
        const status = Object.fromEntries(list.body.devices.map((x: { device_id: string; status: string }) => [x.device_id, x.status]));
        expect(status).toEqual({ phone: 'online', tablet: 'offline' });
        // Heard from again: online once more, announced as a join.
        quiet.send({ type: T.HEARTBEAT, payload: {} });
        const back = await chatty.waitFor((e: Envelope) => e.type === T.DEVICE_JOINED, 5000);
        expect((back.payload.device as { device_id: string }).device_id).toBe('tablet');
      } finally {
        clearInterval(beat);
      }
    } finally {
      await closeAllDevices();
      await n.stop();
    }
  });

  it('shutdown sends RECONNECT then closes with 1012', async () => {
    const n = await startNode({});
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token: await n.token('alice'), device_id: 'phone', session_id: randomUUID() });
    const stopping = n.stop();
    expect(await d.closed).toBe(1012);
    expect((d.ofType(T.RECONNECT)[0].payload as { retry_after_ms: number }).retry_after_ms).toBeGreaterThan(0);
    await stopping;
  });
});
