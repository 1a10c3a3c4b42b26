import { randomUUID } from 'node:crypto';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, eventually, startRedis, startNode, type PrivateRedis, type StartedNode } from '@harmonyflow/testkit';

describe('Redis outage', () => {
  let redis: PrivateRedis;
  let n: StartedNode;
  beforeAll(async () => {
    redis = await startRedis();
    n = await startNode({ REDIS_URL: redis.url });
  });
  afterAll(async () => {
    await closeAllDevices();
    await n?.stop();
    await redis?.stop();
  });

  it('answers 503 store_unavailable while Redis is down and recovers by itself', async () => {
    const token = await n.token('alice');
    const id = randomUUID();
    expect((await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: id, state_data: { a: 1 } } })).status).toBe(201);

    const device = await connectDevice(n.wsUrl);
    await device.auth({ token, device_id: 'phone', session_id: id });
    await device.next(T.SNAPSHOT_RESPONSE);

    await redis.kill();
    device.send({ type: T.STATE_UPDATE, correlation_id: 'during', payload: { key: 'a', value: 5, operation: 'SET' } });
    const err = await device.next(T.ERROR);
    expect(err.payload).toMatchObject({ code: 'store_unavailable', correlation_id: 'during' });
    device.send({ type: T.HEARTBEAT, payload: {} });
    await device.next(T.HEARTBEAT_ACK); // the connection survives the outage
    const write = await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: id, state_data: { a: 2 } } });
    expect(write.status).toBe(503);
    expect(write.body.error).toBe('store_unavailable');
    expect(write.headers.get('retry-after')).toBe('1');
    expect((await api(n.url, 'GET', `/session/${id}`, { token })).status).toBe(503);
    expect((await api(n.url, 'GET', '/ready')).status).toBe(503);
    expect((await api(n.url, 'GET', '/health')).body).toMatchObject({ status: 'degraded', redis: 'down' });

    await redis.restart(); // empty: like a failover to a replica that lost recent data
    await eventually(async () => (await api(n.url, 'GET', '/ready')).status === 200, 10_000, 100);
    const again = await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: id, state_data: { a: 3 } } });
    expect(again.status).toBe(201);
  });
});
