import { randomUUID } from 'node:crypto';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, sleep, useNode, useRedis, type TestDevice } from '@harmonyflow/testkit';

// Write identity over WebSocket: a device's own writes in a resume replay (SPEC §9) and which
// refusals count as processing a mutation id (SPEC §10).

const redis = useRedis();
afterEach(closeAllDevices);

const RATE = 20;

const stores: Array<[string, () => Record<string, string>]> = [
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url, REDIS_PREFIX: `m${randomUUID().slice(0, 6)}:` })],
];

describe.each(stores)('WebSocket write identity (%s)', (_name, storeEnv) => {
  const started = useNode(() => ({ WS_RATE_PER_SECOND: String(RATE), WS_RATE_BURST: String(RATE), ...storeEnv() }));
  let token: string;
  beforeAll(async () => {
    token = await started().token('alice');
  });

  async function device(deviceId: string, sessionId: string, extra: Record<string, unknown> = {}) {
    const d = await connectDevice(started().wsUrl);
    const ok = await d.auth({ token, device_id: deviceId, session_id: sessionId, ...extra });
    return { d, ok };
  }

  function write(d: TestDevice, payload: Record<string, unknown>, corr = randomUUID()) {
    const from = d.frames.length;
    d.send({ type: T.STATE_UPDATE, correlation_id: corr, payload: { operation: 'SET', ...payload } });
    return d.waitFor((e) => (e.type === T.STATE_UPDATE_ACK || e.type === T.ERROR) && e.correlation_id === corr, 5000, from);
  }

  it('a resume replay includes the device\'s own earlier writes: its ACK may have been lost with the socket', async () => {
    const sid = randomUUID();
    const { d: x, ok } = await device('phone', sid);
    await x.next(T.SNAPSHOT_RESPONSE);
    const epoch = ok.payload.epoch as string;
    expect((await write(x, { key: 'mine', value: 'from phone' })).payload).toMatchObject({ version: 1 });
    // Live, the writer never gets its own update back.
    expect(x.ofType(T.STATE_UPDATE)).toHaveLength(0);
    x.terminate();
    await x.closed;
    const { d: back, ok: resumed } = await device('phone', sid, { last_version: 0, last_epoch: epoch });
    expect(resumed.payload).toMatchObject({ resumed: true, version: 1, epoch });
    const own = await back.next(T.STATE_UPDATE);
    expect(own.payload).toMatchObject({ key: 'mine', value: 'from phone', operation: 'SET', version: 1, device_id: 'phone' });
    expect(back.ofType(T.SNAPSHOT_RESPONSE)).toHaveLength(0);
  });

  it('a mutation refused with version_conflict is processed: the same id again is a duplicate, and AUTH_SUCCESS reports it', async () => {
    const sid = randomUUID();
    const { d } = await device('phone', sid);
    expect((await write(d, { key: 'k', value: 1, mutation_id: 1 })).payload).toMatchObject({ version: 1, mutation_id: 1 });
    const conflict = await write(d, { key: 'k', value: 2, base_version: 0, mutation_id: 2 });
    expect(conflict.type).toBe(T.ERROR);
    expect(conflict.payload).toMatchObject({ code: 'version_conflict', current_version: 1 });
    // Another device moves the session on: the duplicate reports the current version.
    const { d: other } = await device('tablet', sid);
    expect((await write(other, { key: 'o', value: 1 })).payload).toMatchObject({ version: 2 });
    const again = await write(d, { key: 'k', value: 2, mutation_id: 2 });
    expect(again.type).toBe(T.STATE_UPDATE_ACK);
    expect(again.payload).toMatchObject({ duplicate: true, mutation_id: 2, version: 2 });
    d.terminate();
    const { ok } = await device('phone', sid);
    expect(ok.payload.last_mutation_id).toBe(2);
    const state = await api(started().url, 'GET', `/session/${sid}`, { token });
    expect(state.body).toMatchObject({ version: 2, state_data: { k: 1, o: 1 } });
  });

  it('a mutation refused in a way a retry would not repeat (invalid_message, rate_limited) is not processed: fixed, it is applied', async () => {
    const sid = randomUUID();
    const { d } = await device('phone', sid);
    await d.next(T.SNAPSHOT_RESPONSE);
    const bad = await write(d, { key: '', value: 1, mutation_id: 5 });
    expect(bad.payload).toMatchObject({ code: 'invalid_message' });
    const fixed = await write(d, { key: 'k', value: 1, mutation_id: 5 });
    expect(fixed.type).toBe(T.STATE_UPDATE_ACK);
    expect(fixed.payload).toMatchObject({ version: 1, mutation_id: 5 });
    expect(fixed.payload.duplicate).toBeUndefined();

    // Spend the rate limit, then send mutation 6: dropped unprocessed with ERROR rate_limited.
    const from = d.frames.length;
    for (let i = 0; i < RATE; i++) d.send({ type: T.HEARTBEAT, payload: {} });
    d.send({ type: T.STATE_UPDATE, correlation_id: 'limited', payload: { key: 'k', value: 2, operation: 'SET', mutation_id: 6 } });
    await d.waitFor((e) => e.type === T.ERROR && e.payload.code === 'rate_limited', 5000, from);
    await sleep(1500); // the bucket refills
    expect(d.frames.slice(from).some((e) => e.type === T.STATE_UPDATE_ACK)).toBe(false);
    const retried = await write(d, { key: 'k', value: 2, mutation_id: 6 });
    expect(retried.type).toBe(T.STATE_UPDATE_ACK);
    expect(retried.payload).toMatchObject({ version: 2, mutation_id: 6 });
    expect(retried.payload.duplicate).toBeUndefined();
    expect(d.closeCode).toBeNull();
  });
});
