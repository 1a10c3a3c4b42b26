import { randomUUID } from 'node:crypto';
import { api, useNode, useRedis, type StartedNode } from '@harmonyflow/testkit';

const redis = useRedis();

describe.each([
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url, REDIS_PREFIX: `h${randomUUID().slice(0, 6)}:`, MAX_STATE_BYTES: String(64 * 1024) })],
])('session HTTP API (%s)', (_name, env) => {
  const started = useNode(() => ({ MAX_STATE_BYTES: String(64 * 1024), ...env() }));
  let n: StartedNode;
  let alice: string;
  let bob: string;
  let admin: string;
  beforeAll(async () => {
    n = started();
    alice = await n.token('alice');
    bob = await n.token('bob');
    admin = await n.token('root', 'admin');
  });
  const call = (method: string, path: string, opts: Parameters<typeof api>[3] = {}) => api(n.url, method, path, opts);
  const snapshot = (body: Record<string, unknown>, token = alice) => call('POST', '/session/snapshot', { token, body });

  describe('auth', () => {
    it('401 without a token, with a bad one, with an expired one', async () => {
      const id = randomUUID();
      expect((await call('GET', `/session/${id}`)).body).toMatchObject({ error: 'unauthorized' });
      expect((await call('GET', `/session/${id}`, { token: 'nope' })).status).toBe(401);
      const expired = await n.token('alice', 'user', -10);
      const r = await call('GET', `/session/${id}`, { token: expired });
      expect(r.status).toBe(401);
      expect(r.body).toMatchObject({ error: 'unauthorized', reason: 'token_expired' });
      expect((await call('POST', '/session/snapshot', { body: {} })).status).toBe(401);
    });
  });

  describe('POST /session/snapshot and GET /session/:uuid', () => {
    it('creates (201), updates (200) and reads the stored snapshot with an ETag', async () => {
      const id = randomUUID();
      const created = await snapshot({ session_id: id, user_id: 'alice', state_data: { meditation_progress: 75, current_mood: 'calm' }, device_id: 'phone', app_version: '2.1.0', version: 1 });
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ session_id: id, user_id: 'alice', version: 1, device_id: 'phone', app_version: '2.1.0', state_data: { meditation_progress: 75, current_mood: 'calm' } });
      for (const f of ['created_at', 'updated_at', 'expires_at']) expect(new Date(created.body[f]).toISOString()).toBe(created.body[f]);
      const updated = await snapshot({ session_id: id, state_data: { meditation_progress: 80 }, version: 2 });
      expect(updated.status).toBe(200);
      expect(updated.body).toMatchObject({ version: 2, device_id: 'phone', state_data: { meditation_progress: 80 } });
      const unconditional = await snapshot({ session_id: id, state_data: { x: 1 } });
      expect(unconditional.body.version).toBe(3);

      const got = await call('GET', `/session/${id}`, { token: alice });
      expect(got.status).toBe(200);
      expect(got.headers.get('etag')).toBe('"3"');
      expect(got.body).toMatchObject({ session_id: id, user_id: 'alice', version: 3, state_data: { x: 1 } });
      expect((await call('GET', `/session/${id}`, { token: alice, headers: { 'if-none-match': '"3"' } })).status).toBe(304);
      expect((await call('GET', `/session/${id}`, { token: alice, headers: { 'if-none-match': '"2"' } })).status).toBe(200);
    });

    it('409 version_conflict with current_version and server_state', async () => {
      const id = randomUUID();
      await snapshot({ session_id: id, state_data: { a: 1 }, version: 1 });
      const r = await snapshot({ session_id: id, state_data: { a: 2 }, version: 1 });
      expect(r.status).toBe(409);
      expect(r.body).toMatchObject({ error: 'version_conflict', current_version: 1, server_state: { a: 1 } });
      const fresh = await snapshot({ session_id: randomUUID(), state_data: { a: 2 }, version: 3 });
      expect(fresh.status).toBe(409);
      expect(fresh.body).toMatchObject({ error: 'version_conflict', current_version: 0 });
    });

    it('hides sessions from other users (404), lets admins read and write, refuses foreign user_id (403)', async () => {
      const id = randomUUID();
      await snapshot({ session_id: id, state_data: { a: 1 } });
      expect((await call('GET', `/session/${id}`, { token: bob })).status).toBe(404);
      expect((await snapshot({ session_id: id, state_data: { a: 9 } }, bob)).status).toBe(404);
      expect((await call('GET', `/session/${id}`, { token: admin })).status).toBe(200);
      expect((await call('GET', `/session/${randomUUID()}`, { token: alice })).status).toBe(404);
      const foreign = await snapshot({ session_id: randomUUID(), user_id: 'bob', state_data: {} }, alice);
      expect(foreign.status).toBe(403);
      expect(foreign.body.error).toBe('forbidden');
      const forBob = await snapshot({ session_id: randomUUID(), user_id: 'bob', state_data: { by: 'admin' } }, admin);
      expect(forBob.status).toBe(201);
      expect(forBob.body.user_id).toBe('bob');
      expect((await call('GET', `/session/${forBob.body.session_id}`, { token: bob })).status).toBe(200);
    });

    it('400 for a non-UUID id, bad JSON, schema violations; 413 for too large', async () => {
      const bad = await call('GET', '/session/not-a-uuid', { token: alice });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toBe('invalid_session_id');
      const badJson = await call('POST', '/session/snapshot', { token: alice, raw: '{"session_id": ' });
      expect(badJson.status).toBe(400);
      expect(badJson.body.error).toBe('invalid_json');
      const invalid = await snapshot({ session_id: 'x', state_data: [1], version: 0 });
      expect(invalid.status).toBe(400);
      expect(invalid.body.error).toBe('validation_failed');
      expect(invalid.body.details.map((d: { path: string }) => d.path).sort()).toEqual(['session_id', 'state_data', 'version']);
      const tooBig = await snapshot({ session_id: randomUUID(), state_data: { big: 'x'.repeat(70 * 1024) } });
      expect(tooBig.status).toBe(413);
      const hugeBody = await call('POST', '/session/snapshot', { token: alice, raw: 'x'.repeat(200 * 1024) });
      expect(hugeBody.status).toBe(413);
      const deep = '{"session_id":"' + randomUUID() + '","state_data":' + '{"a":'.repeat(200) + '1' + '}'.repeat(200) + '}';
      const deepRes = await call('POST', '/session/snapshot', { token: alice, raw: deep });
      expect(deepRes.status).toBe(400);
    });

    it('stores __proto__ and constructor keys as plain data', async () => {
      const id = randomUUID();
      const raw = `{"session_id":"${id}","state_data":{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"x":1}}}}`;
      expect((await call('POST', '/session/snapshot', { token: alice, raw })).status).toBe(201);
      const got = await call('GET', `/session/${id}`, { token: alice });
      expect(JSON.stringify(got.body.state_data)).toBe('{"__proto__":{"isAdmin":true},"constructor":{"prototype":{"x":1}}}');
    });
  });

  describe('POST /session/incremental', () => {
    it('applies at the current base, rebases an older base, and refuses conflicting keys', async () => {
      const id = randomUUID();
      await snapshot({ session_id: id, state_data: { a: 1, b: 1, c: 1 }, version: 1 });
      const r1 = await call('POST', '/session/incremental', { token: alice, body: { session_id: id, base_version: 1, changes: { a: 2 }, deleted_keys: ['c'] } });
      expect(r1.status).toBe(200);
      expect(r1.body).toMatchObject({ version: 2, rebased: false });
      const r2 = await call('POST', '/session/incremental', { token: alice, body: { session_id: id, base_version: 1, changes: { b: 5 } } });
      expect(r2.body).toMatchObject({ version: 3, rebased: true });
      const r3 = await call('POST', '/session/incremental', { token: alice, body: { session_id: id, base_version: 1, changes: { a: 9 }, deleted_keys: ['b'] } });
      expect(r3.status).toBe(409);
      expect(r3.body).toMatchObject({ error: 'version_conflict', current_version: 3, server_state: { a: 2, b: 5 } });
      expect(r3.body.conflicting_keys.sort()).toEqual(['a', 'b']);
      expect((await call('GET', `/session/${id}`, { token: alice })).body.state_data).toEqual({ a: 2, b: 5 });
    });

    it('validates the body', async () => {
      const r = await call('POST', '/session/incremental', { token: alice, body: { session_id: randomUUID(), changes: {}, deleted_keys: [] } });
      expect(r.status).toBe(400);
      expect(r.body.error).toBe('validation_failed');
      const both = await call('POST', '/session/incremental', { token: alice, body: { session_id: randomUUID(), changes: { a: 1 }, deleted_keys: ['a'] } });
      expect(both.status).toBe(400);
    });
  });

  describe('POST /session/conflict/resolve', () => {
    it('server_wins writes nothing; client_wins and merge write once at current+1', async () => {
      const id = randomUUID();
      await snapshot({ session_id: id, state_data: { a: 1, b: 1 }, version: 1 });
      const sw = await call('POST', '/session/conflict/resolve', { token: alice, body: { session_id: id, client_version: 1, client_state: { a: 5 }, resolution_strategy: 'server_wins' } });
      expect(sw.status).toBe(200);
      expect(sw.body).toMatchObject({ state_data: { a: 1, b: 1 }, version: 1, strategy: 'server_wins' });
      const merge = await call('POST', '/session/conflict/resolve', { token: alice, body: { session_id: id, client_state: { b: 2, c: 3 }, resolution_strategy: 'merge' } });
      expect(merge.body).toEqual({ session_id: id, state_data: { a: 1, b: 2, c: 3 }, version: 2, strategy: 'merge' });
      const cw = await call('POST', '/session/conflict/resolve', { token: alice, body: { session_id: id, client_state: { z: 1 }, resolution_strategy: 'client_wins' } });
      expect(cw.body).toEqual({ session_id: id, state_data: { z: 1 }, version: 3, strategy: 'client_wins' });
      expect((await call('GET', `/session/${id}`, { token: alice })).body).toMatchObject({ version: 3, state_data: { z: 1 } });
    });

    it('400 for an unknown strategy, 404 for an unknown or foreign session', async () => {
      const id = randomUUID();
      await snapshot({ session_id: id, state_data: { a: 1 } });
      const bad = await call('POST', '/session/conflict/resolve', { token: alice, body: { session_id: id, client_state: {}, resolution_strategy: 'newest_wins' } });
      expect(bad.status).toBe(400);
      expect(bad.body.error).toBe('validation_failed');
      expect((await call('POST', '/session/conflict/resolve', { token: alice, body: { session_id: randomUUID(), client_state: {}, resolution_strategy: 'merge' } })).status).toBe(404);
      expect((await call('POST', '/session/conflict/resolve', { token: bob, body: { session_id: id, client_state: {}, resolution_strategy: 'client_wins' } })).status).toBe(404);
    });
  });

  describe('ops routes', () => {
    it('GET /health has the seed shape plus node_id and redis', async () => {
      const r = await call('GET', '/health');
      expect(r.status).toBe(200);
      expect(r.body).toMatchObject({ status: 'healthy', version: '1.1.0', node_id: n.node.config.nodeId, metrics: { snapshot_ttl_hours: 168, multi_device_enabled: true, versioning_enabled: true } });
      expect(typeof r.body.active_connections).toBe('number');
      expect(r.body.uptime).toMatch(/^\d+h\d+m\d+s$/);
      expect(['up', 'embedded']).toContain(r.body.redis);
    });

    it('GET /ready is 200 and GET /metrics is Prometheus text with the HTTP histogram', async () => {
      expect((await call('GET', '/ready')).status).toBe(200);
      const m = await call('GET', '/metrics');
      expect(m.status).toBe(200);
      expect(m.body).toContain('hf_http_request_duration_seconds_bucket{');
      expect(m.body).toMatch(/route="\/session\/snapshot",method="POST",status="201"/);
      expect(m.body).toContain('hf_process_resident_memory_bytes');
    });

    it('unknown routes are 404 JSON', async () => {
      const r = await call('GET', '/nope');
      expect(r.status).toBe(404);
      expect(r.body.error).toBe('not_found');
    });
  });

  describe('POST /auth/refresh', () => {
    it('rotates refresh tokens and revokes the family when one is reused', async () => {
      const first = await n.node.tokens.signRefresh('alice', 'user');
      const r1 = await call('POST', '/auth/refresh', { body: { refresh_token: first } });
      expect(r1.status).toBe(200);
      expect(r1.body).toMatchObject({ token_type: 'Bearer', expires_in: 900 });
      const who = await n.node.tokens.verifyAccess(r1.body.access_token);
      expect(who).toMatchObject({ userId: 'alice', role: 'user' });
      const r2 = await call('POST', '/auth/refresh', { body: { refresh_token: r1.body.refresh_token } });
      expect(r2.status).toBe(200);
      const reuse = await call('POST', '/auth/refresh', { body: { refresh_token: first } });
      expect(reuse.status).toBe(401);
      // The family is revoked: even the newest token of it is refused now.
      expect((await call('POST', '/auth/refresh', { body: { refresh_token: r2.body.refresh_token } })).status).toBe(401);
    });

    it('refuses access tokens, garbage and missing fields', async () => {
      expect((await call('POST', '/auth/refresh', { body: { refresh_token: alice } })).status).toBe(401);
      expect((await call('POST', '/auth/refresh', { body: { refresh_token: 'x.y.z' } })).status).toBe(401);
      expect((await call('POST', '/auth/refresh', { body: {} })).status).toBe(400);
    });
  });
});
