import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { MessageType as T } from '@harmonyflow/protocol';
import {
  api, closeAllDevices, connectDevice, startNode, useRedis, type StartedNode, type TestDevice,
} from '@harmonyflow/testkit';

/**
 * SPEC §8–§9 hardening, each point tried as a client would: handoff to new devices, write identity,
 * keys, re-AUTH, quotas, HTTP auth before the body, live admin figures. Both stores.
 */
const redis = useRedis();

describe.each([
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url })],
])('hardening (%s)', (_name, env) => {
  let n: StartedNode;
  let alice: string;
  beforeAll(async () => {
    n = await startNode({ ...env(), MAX_HANDOFFS_PER_SESSION: '3', WS_RATE_PER_SECOND: '1000', WS_RATE_BURST: '1000' });
    alice = await n.token('alice');
  });
  afterAll(async () => {
    await closeAllDevices();
    await n.stop();
  });
  afterEach(closeAllDevices);

  async function device(deviceId: string, sid: string, token = alice): Promise<TestDevice> {
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token, device_id: deviceId, session_id: sid });
    await d.next(T.SNAPSHOT_RESPONSE);
    return d;
  }

  describe('handoff to a device that is not in the session yet', () => {
    it('the seed\'s example works as written: neither device ever connected → 201 and a usable token', async () => {
      const sid = randomUUID();
      expect((await api(n.url, 'POST', '/session/snapshot', { token: alice, body: { session_id: sid, user_id: 'alice', state_data: { meditation_progress: 75 }, device_id: 'device-phone' } })).status).toBe(201);
      const h = await api(n.url, 'POST', `/session/${sid}/handoff`, { token: alice, body: { source_device: 'device-phone', target_device: 'device-tablet' } });
      expect(h.status).toBe(201);
      expect(h.body).toMatchObject({ source_device: 'device-phone', target_device: 'device-tablet' });
      expect(h.body.token).toMatch(/^[A-Za-z0-9_-]{22,}$/);
      const got = await api(n.url, 'GET', `/session/${sid}/handoff/${h.body.token}`, { token: alice });
      expect(got.status).toBe(200);
      expect(got.body).toMatchObject({ valid: true, state_data: { meditation_progress: 75 }, version: 1, source_device: 'device-phone', target_device: 'device-tablet' });
    });

    it('tells a connected target; validates device ids (1-128 characters); refuses past MAX_HANDOFFS_PER_SESSION (429)', async () => {
      const sid = randomUUID();
      const tablet = await device('tablet-x', sid);
      const h = await api(n.url, 'POST', `/session/${sid}/handoff`, { token: alice, body: { source_device: 'phone-never-seen', target_device: 'tablet-x' } });
      expect(h.status).toBe(201);
      expect((await tablet.next(T.HANDOFF_REQUESTED)).payload).toMatchObject({ token: h.body.token, source_device: 'phone-never-seen' });
      for (const [source, target] of [['', 't'], ['s', 'x'.repeat(129)], ['s'.repeat(129), 't']]) {
        const bad = await api(n.url, 'POST', `/session/${sid}/handoff`, { token: alice, body: { source_device: source, target_device: target } });
        expect([bad.status, bad.body.error]).toEqual([400, 'validation_failed']);
      }
      expect((await api(n.url, 'POST', `/session/${sid}/handoff`, { token: alice, body: { source_device: 's'.repeat(128), target_device: 't' } })).status).toBe(201);
      expect((await api(n.url, 'POST', `/session/${sid}/handoff`, { token: alice, body: { source_device: 'a', target_device: 'b' } })).status).toBe(201);
      const over = await api(n.url, 'POST', `/session/${sid}/handoff`, { token: alice, body: { source_device: 'a', target_device: 'b' } });
      expect([over.status, over.body.error]).toEqual([429, 'quota_exceeded']);
      // A used token frees its place.
      expect((await api(n.url, 'GET', `/session/${sid}/handoff/${h.body.token}`, { token: alice })).status).toBe(200);
      expect((await api(n.url, 'POST', `/session/${sid}/handoff`, { token: alice, body: { source_device: 'a', target_device: 'b' } })).status).toBe(201);
    });
  });

  describe('write identity', () => {
    it('device_id and correlation_id are 1-128 characters; (tab:1, x) and (tab, 1:x) are two writes', async () => {
      const sid = randomUUID();
      const long = await connectDevice(n.wsUrl);
      long.send({ type: T.AUTH, payload: { token: alice, device_id: 'd'.repeat(129), session_id: sid } });
      expect(await long.closed).toBe(4401);
      expect(long.ofType(T.AUTH_FAILURE)[0].payload).toMatchObject({ code: 'invalid_message' });
      const a = await device('tab:1', sid);
      const b = await device('tab', sid);
      a.send({ type: T.STATE_UPDATE, correlation_id: 'x', payload: { key: 'n', operation: 'INCREMENT' } });
      expect((await a.next(T.STATE_UPDATE_ACK)).payload).toMatchObject({ version: 1 });
      b.send({ type: T.STATE_UPDATE, correlation_id: '1:x', payload: { key: 'n', operation: 'INCREMENT' } });
      expect((await b.next(T.STATE_UPDATE_ACK)).payload).toMatchObject({ version: 2, value: 2 });
      b.send({ type: T.STATE_UPDATE, correlation_id: 'c'.repeat(129), payload: { key: 'n', operation: 'INCREMENT' } });
      expect((await b.next(T.ERROR)).payload).toMatchObject({ code: 'invalid_message' });
      expect((await api(n.url, 'GET', `/session/${sid}`, { token: alice })).body).toMatchObject({ version: 2, state_data: { n: 2 } });
      expect((await api(n.url, 'POST', '/session/snapshot', { token: alice, body: { session_id: randomUUID(), state_data: {}, device_id: 'd'.repeat(129) } })).status).toBe(400);
      // A lone surrogate would reach Redis as U+FFFD and merge two identities into one.
      expect((await api(n.url, 'POST', '/session/snapshot', { token: alice, body: { session_id: randomUUID(), state_data: {}, device_id: 'tab\ud800' } })).status).toBe(400);
      const lone = await connectDevice(n.wsUrl);
      lone.send({ type: T.AUTH, payload: { token: alice, device_id: 'tab\udfff', session_id: sid } });
      expect(await lone.closed).toBe(4401);
      b.send({ type: T.STATE_UPDATE, correlation_id: 'x\ud800', payload: { key: 'n', operation: 'INCREMENT' } });
      expect((await b.waitFor((e) => e.type === T.ERROR && b.ofType(T.ERROR).length === 2)).payload).toMatchObject({ code: 'invalid_message' });
    });

    it('a last_epoch that cannot be an epoch gets a snapshot, not a replay', async () => {
      const sid = randomUUID();
      const w = await device('w', sid);
      w.send({ type: T.STATE_UPDATE, correlation_id: 'k', payload: { key: 'k', value: 1, operation: 'SET' } });
      await w.next(T.STATE_UPDATE_ACK);
      const d = await connectDevice(n.wsUrl);
      const ok = await d.auth({ token: alice, device_id: 'r', session_id: sid, last_version: 0, last_epoch: 'e'.repeat(65) });
      expect(ok.payload.resumed).toBe(false);
      expect((await d.next(T.SNAPSHOT_RESPONSE)).payload).toMatchObject({ version: 1, state_data: { k: 1 } });
    });

    it('mutation ids: applied once, a copy is ACKed duplicate with the current version, AUTH_SUCCESS carries last_mutation_id', async () => {
      const sid = randomUUID();
      const phone = await device('phone', sid);
      const other = await device('other', sid);
      phone.send({ type: T.STATE_UPDATE, correlation_id: 'm1', payload: { key: 'n', value: 5, operation: 'INCREMENT', mutation_id: 1 } });
      expect((await phone.next(T.STATE_UPDATE_ACK)).payload).toEqual({ correlation_id: 'm1', version: 1, value: 5, mutation_id: 1 });
      phone.send({ type: T.STATE_UPDATE, correlation_id: 'm1-again-much-later', payload: { key: 'n', value: 5, operation: 'INCREMENT', mutation_id: 1 } });
      const dup = await phone.waitFor((e) => e.type === T.STATE_UPDATE_ACK && e.correlation_id === 'm1-again-much-later');
      expect(dup.payload).toEqual({ correlation_id: 'm1-again-much-later', version: 1, mutation_id: 1, duplicate: true });
      for (const bad of [0, -1, 1.5, '2']) {
        phone.send({ type: T.STATE_UPDATE, correlation_id: `bad-${bad}`, payload: { key: 'n', operation: 'INCREMENT', mutation_id: bad } });
        expect((await phone.waitFor((e) => e.type === T.ERROR && e.correlation_id === `bad-${bad}`)).payload.code).toBe('invalid_message');
      }
      expect(other.ofType(T.STATE_UPDATE)).toHaveLength(1);
      const again = await connectDevice(n.wsUrl);
      const ok = await again.auth({ token: alice, device_id: 'phone', session_id: sid });
      expect(ok.payload.last_mutation_id).toBe(1);
      expect((await api(n.url, 'GET', `/session/${sid}`, { token: alice })).body.state_data).toEqual({ n: 5 });
    });
  });

  describe('keys', () => {
    it('refuses keys that are not well-formed Unicode or longer than 256 bytes, HTTP and WS, writing nothing', async () => {
      const sid = randomUUID();
      const ok = await api(n.url, 'POST', '/session/snapshot', { token: alice, body: { session_id: sid, state_data: { ['é'.repeat(128)]: 1, '🌍': 2 } } });
      expect(ok.status).toBe(201);
      for (const body of [
        { session_id: sid, state_data: { '\ud800': 1 } },
        { session_id: sid, state_data: { ['é'.repeat(129)]: 1 } },
        { session_id: sid, state_data: { '': 1 } },
      ]) {
        const r = await api(n.url, 'POST', '/session/snapshot', { token: alice, body });
        expect([r.status, r.body.error]).toEqual([400, 'validation_failed']);
      }
      for (const body of [
        { session_id: sid, changes: { '\udfff': 1 } },
        { session_id: sid, deleted_keys: ['\ud800'] },
        { session_id: sid, deleted_keys: ['x'.repeat(257)] },
      ]) {
        const r = await api(n.url, 'POST', '/session/incremental', { token: alice, body });
        expect([r.status, r.body.error]).toEqual([400, 'validation_failed']);
      }
      const d = await device('phone', sid);
      for (const [i, key] of ['\ud800', '\udfff', 'a\udc00b', 'x'.repeat(257), ''].entries()) {
        d.send({ type: T.STATE_UPDATE, correlation_id: `bad-${i}`, payload: { key, value: 1, operation: 'SET' } });
        const err = await d.waitFor((e) => e.type === T.ERROR && e.correlation_id === `bad-${i}`);
        expect(err.payload.code).toBe('invalid_message');
      }
      d.send({ type: T.STATE_UPDATE, correlation_id: 'ok', payload: { key: '🌍', value: 3, operation: 'SET' } });
      expect((await d.next(T.STATE_UPDATE_ACK)).payload.version).toBe(2);
      expect((await api(n.url, 'GET', `/session/${sid}`, { token: alice })).body.state_data).toEqual({ ['é'.repeat(128)]: 1, '🌍': 3 });
    });
  });

  describe('re-AUTH', () => {
    it('a token that no longer grants the connection\'s session closes it with 4403', async () => {
      const sid = randomUUID();
      await device('phone', sid);
      const consoleDev = await device('console', sid, await n.token('root', 'admin'));
      consoleDev.send({ type: T.AUTH, payload: { token: await n.token('root', 'user'), device_id: 'console' } });
      expect(await consoleDev.closed).toBe(4403);
      expect(consoleDev.ofType(T.AUTH_FAILURE)[0].payload).toMatchObject({ code: 'forbidden' });
      // Still granted: a refresh keeps the connection.
      const phone2 = await device('phone2', sid);
      phone2.send({ type: T.AUTH, payload: { token: await n.token('alice'), device_id: 'phone2' } });
      expect((await phone2.waitFor((e) => e.type === T.AUTH_SUCCESS && phone2.ofType(T.AUTH_SUCCESS).length === 2)).payload.session_id).toBe(sid);
      const other = await device('phone3', sid);
      other.send({ type: T.AUTH, payload: { token: await n.token('mallory'), device_id: 'phone3' } });
      expect(await other.closed).toBe(4403);
    });
  });

  describe('HTTP edges', () => {
    /** Sends only the headers and the first bytes of a large body; resolves with the raw response. */
    function partialPost(token: string | null, waitMs = 3000): Promise<string> {
      return new Promise((resolve, reject) => {
        const s = net.connect(n.node.port, '127.0.0.1', () => {
          s.write(`POST /session/snapshot HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 900000\r\n${token ? `Authorization: Bearer ${token}\r\n` : ''}\r\n{"session_id":`);
        });
        let out = '';
        s.on('data', (d) => (out += d.toString()));
        s.on('close', () => resolve(out));
        s.on('error', reject);
        setTimeout(() => {
          s.destroy();
          resolve(out);
        }, waitMs);
      });
    }

    it('a protected route answers 401 before reading the body of a request without valid credentials', async () => {
      for (const token of [null, 'not-a-jwt', await n.token('alice', 'user', -10)]) {
        const raw = await partialPost(token);
        expect(raw).toMatch(/^HTTP\/1\.1 401/);
        expect(raw).toContain('"error":"unauthorized"');
      }
      // With valid credentials the server waits for the body (no answer yet).
      expect(await partialPost(alice, 500)).toBe('');
    });

    it('the answering node\'s own connections and figures are live, not one heartbeat old', async () => {
      const admin = await n.token('root', 'admin');
      const sid = randomUUID();
      await device('live-dev', sid);
      const conns = await api(n.url, 'GET', '/admin/connections?limit=500', { token: admin });
      expect(conns.body.items.map((c: { device_id: string }) => c.device_id)).toContain('live-dev');
      const m = await api(n.url, 'GET', '/admin/metrics/connections', { token: admin });
      expect(m.body.active_connections).toBe(n.node.ws.connectionCount);
    });
  });
});

describe('quotas', () => {
  it('the 101st live session of a user is 429 over HTTP and AUTH_FAILURE quota_exceeded + 4429 over WS (embedded and Redis)', async () => {
    for (const env of [{}, { REDIS_URL: redis().url }]) {
      const n = await startNode(env);
      try {
        const user = `quota-${randomUUID()}`;
        const token = await n.token(user);
        const writes = await Promise.all(Array.from({ length: 100 }, () => api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: randomUUID(), state_data: { a: 1 } } })));
        expect(writes.every((r) => r.status === 201)).toBe(true);
        const over = await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: randomUUID(), state_data: { a: 1 } } });
        expect([over.status, over.body.error]).toEqual([429, 'quota_exceeded']);
        const ws = await connectDevice(n.wsUrl);
        const refused = randomUUID();
        ws.send({ type: T.AUTH, payload: { token, device_id: 'd', session_id: refused } });
        expect(await ws.closed).toBe(4429);
        expect(ws.ofType(T.AUTH_FAILURE)[0].payload).toMatchObject({ code: 'quota_exceeded' });
        // The refused AUTH joined the session's hub before its claim (auth.ts): it left it, and
        // counted nothing.
        expect(n.node.hub.connsOf(refused)).toBeUndefined();
        expect(await n.node.presence.list(refused, Date.now())).toEqual([]);
        // Existing sessions are unaffected, and so is another user.
        const mine = await connectDevice(n.wsUrl);
        await mine.auth({ token, device_id: 'd' });
        expect((await api(n.url, 'POST', '/session/snapshot', { token: await n.token('someone-else'), body: { session_id: randomUUID(), state_data: {} } })).status).toBe(201);
      } finally {
        await closeAllDevices();
        await n.stop();
      }
    }
  }, 30_000);
});
