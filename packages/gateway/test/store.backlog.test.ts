import { randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, startNode, useRedis, type StartedNode } from '@harmonyflow/testkit';
import { ConfigError, loadConfig } from '../src/config';

/**
 * A node does not queue state changes behind a store that fell too far behind
 * (STORE_BACKLOG_LIMIT_MS: its oldest command still unanswered is older than that): it refuses
 * them unapplied. Queued, they could wait past the command timeout and fail while still being
 * applied later, telling their writer the opposite of what happened.
 */
const redis = useRedis();

describe('writes while the store is behind', () => {
  let n: StartedNode;
  let admin: Redis;
  beforeAll(async () => {
    n = await startNode({ REDIS_URL: redis().url, STORE_BACKLOG_LIMIT_MS: '800' });
    admin = new Redis(redis().url);
  });
  afterAll(async () => {
    await closeAllDevices();
    admin.disconnect();
    await n.stop();
  });

  it('are refused at once and never applied once the oldest unanswered command is older than the limit', async () => {
    const token = await n.token('alice');
    const sid = randomUUID();
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token, device_id: 'phone', session_id: sid });
    const write = (corr: string, key: string) => d.send({ type: T.STATE_UPDATE, correlation_id: corr, payload: { key, value: corr, operation: 'SET' } });
    const answer = (corr: string) => d.waitFor((f) => (f.type === T.STATE_UPDATE_ACK || f.type === T.ERROR) && f.correlation_id === corr, 10_000);
    write('w0', 'w0');
    expect((await answer('w0')).type).toBe(T.STATE_UPDATE_ACK);

    // Redis stops answering for 5 s (as in a stall), past the 3 s command timeout.
    await admin.call('CLIENT', 'PAUSE', '5000', 'ALL');
    const paused = Date.now();
    write('early', 'early'); // sent, unanswered: the store falls behind from here
    await new Promise((r) => setTimeout(r, 1200));

    const sentLate = Date.now();
    write('late', 'late');
    const late = await answer('late');
    expect(late.type).toBe(T.ERROR);
    expect(late.payload).toMatchObject({ code: 'store_unavailable' });
    expect(String(late.payload.message)).toMatch(/behind: the change was not applied/);
    expect(Date.now() - sentLate).toBeLessThan(1000); // at once, not after the command timeout

    const backlog = /^hf_store_backlog_seconds (\S+)$/m.exec(String((await api(n.url, 'GET', '/metrics')).body));
    expect(Number(backlog?.[1])).toBeGreaterThan(0.8);
    const http = await api(n.url, 'POST', '/session/incremental', { token, body: { session_id: sid, changes: { viaHttp: 1 } } });
    expect(http.status).toBe(503);
    expect(http.body).toMatchObject({ error: 'store_unavailable' });
    expect(http.headers.get('retry-after')).toBe('1');

    // The write sent before the limit stays ambiguous: it times out (3 s) while Redis still holds
    // it, and Redis applies it when it comes back.
    const early = await answer('early');
    expect(early.payload).toMatchObject({ code: 'store_unavailable' });
    expect(Date.now() - paused).toBeLessThan(5000);
    // Timed out, it still counts as unanswered (Redis holds it): the store is still behind, and a
    // write now is refused too rather than queued behind it.
    await new Promise((r) => setTimeout(r, Math.max(0, paused + 3500 - Date.now())));
    write('afterTimeout', 'afterTimeout');
    const afterTimeout = await answer('afterTimeout');
    expect(afterTimeout.payload).toMatchObject({ code: 'store_unavailable' });
    expect(String(afterTimeout.payload.message)).toMatch(/behind: the change was not applied/);

    // Redis answers again: writes go through, and the refused ones were never applied.
    await new Promise((r) => setTimeout(r, Math.max(0, paused + 5300 - Date.now())));
    let after = null;
    for (let i = 0; i < 50 && after?.type !== T.STATE_UPDATE_ACK; i++) {
      write(`after${i}`, 'after');
      after = await answer(`after${i}`);
      if (after.type !== T.STATE_UPDATE_ACK) await new Promise((r) => setTimeout(r, 100));
    }
    expect(after?.type).toBe(T.STATE_UPDATE_ACK);
    const snap = await api(n.url, 'GET', `/session/${sid}`, { token });
    expect(snap.status).toBe(200);
    expect(Object.keys(snap.body.state_data).sort()).toEqual(['after', 'early', 'w0']); // not late, afterTimeout, viaHttp
    const metrics = String((await api(n.url, 'GET', '/metrics')).body);
    expect(metrics).toMatch(/hf_writes_shed_total\{source="ws"\} [1-9]/);
    expect(metrics).toMatch(/^hf_store_backlog_seconds 0$/m);
  });

  it('mutation ids sent without waiting: later ids wait for the one refused; sent again, it is applied, and so are they, each once (SPEC §10)', async () => {
    const token = await n.token('dora');
    const sid = randomUUID();
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token, device_id: 'phone', session_id: sid });
    let sent = 0;
    const write = (mid: number) => {
      const corr = `m${mid}-${++sent}`;
      d.send({ type: T.STATE_UPDATE, correlation_id: corr, payload: { key: `k${mid}`, value: mid, operation: 'SET', mutation_id: mid } });
      return d.waitFor((f) => (f.type === T.STATE_UPDATE_ACK || f.type === T.ERROR) && f.correlation_id === corr, 10_000);
    };
    expect((await write(1)).type).toBe(T.STATE_UPDATE_ACK);

    await admin.call('CLIENT', 'PAUSE', '2500', 'ALL'); // shorter than the command timeout
    const second = write(2); // sent, answered when Redis is back
    await new Promise((r) => setTimeout(r, 1200));
    const third = await write(3);
    expect(third.payload).toMatchObject({ code: 'store_unavailable' });
    expect(String(third.payload.message)).toMatch(/behind: the change was not applied/);
    expect((await second).type).toBe(T.STATE_UPDATE_ACK);

    // The store caught up, but 4 must not go before 3: 3's retry would be a duplicate, never applied.
    const fourth = await write(4);
    expect(fourth.type).toBe(T.ERROR);
    expect(fourth.payload).toMatchObject({ code: 'store_unavailable' });
    expect(String(fourth.payload.message)).toMatch(/mutation 3 was not applied: send it again/);
    const retried = await write(3);
    expect(retried.type).toBe(T.STATE_UPDATE_ACK);
    expect(retried.payload).toMatchObject({ mutation_id: 3 });
    expect(retried.payload.duplicate).toBeUndefined();
    const fourthAgain = await write(4);
    expect(fourthAgain.type).toBe(T.STATE_UPDATE_ACK);
    expect(fourthAgain.payload.duplicate).toBeUndefined();

    const snap = await api(n.url, 'GET', `/session/${sid}`, { token });
    expect(snap.body).toMatchObject({ version: 4, state_data: { k1: 1, k2: 2, k3: 3, k4: 4 } });
  });
});

describe('STORE_BACKLOG_LIMIT_MS', () => {
  it('defaults to 1 s, may be 0 (never refuse), and must stay below the command timeout', () => {
    expect(loadConfig({}).storeBacklogLimitMs).toBe(1000);
    expect(loadConfig({ STORE_BACKLOG_LIMIT_MS: '0' }).storeBacklogLimitMs).toBe(0);
    expect(() => loadConfig({ STORE_BACKLOG_LIMIT_MS: '3000' })).toThrow(ConfigError);
    expect(() => loadConfig({ STORE_BACKLOG_LIMIT_MS: 'soon' })).toThrow(ConfigError);
  });
});
