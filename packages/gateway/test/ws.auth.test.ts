import { randomUUID } from 'node:crypto';
import { MessageType as T } from '@harmonyflow/protocol';
import { StoreUnavailableError } from '../src/errors';
import { api, closeAllDevices, connectDevice, useNode, useRedis, type StartedNode, type TestDevice } from '@harmonyflow/testkit';

// Authentication timing: what a connection does while an AUTH is in flight, and how fast a wrong
// first frame is refused. A node of its own: a long AUTH deadline and a rate limit that a burst
// of frames stays under.

const redis = useRedis();
afterEach(closeAllDevices);

const stores: Array<[string, () => Record<string, string>]> = [
  ['embedded store', () => ({})],
  ['Redis store', () => ({ REDIS_URL: redis().url, REDIS_PREFIX: `a${randomUUID().slice(0, 6)}:` })],
];

/**
 * Token checks take `ms` from now on, as with an identity provider slow to serve its keys: frames
 * sent behind an AUTH then surely arrive while it is in flight.
 */
function slowTokens(n: StartedNode, ms: number): void {
  const tokens = n.node.tokens;
  const verify = tokens.verifyAccess.bind(tokens);
  jest.spyOn(tokens, 'verifyAccess').mockImplementation(async (token) => {
    await new Promise((r) => setTimeout(r, ms));
    return verify(token);
  });
}

afterEach(() => jest.restoreAllMocks());

/** A JSON HEARTBEAT whose correlation_id holds a byte that is not UTF-8. */
const NOT_UTF8 = Buffer.concat([Buffer.from('{"type":1,"correlation_id":"x'), Buffer.from([0xff]), Buffer.from('","payload":{}}')]);

describe.each(stores)('WebSocket authentication (%s)', (_name, storeEnv) => {
  const started = useNode(() => ({ AUTH_TIMEOUT_MS: '5000', WS_RATE_PER_SECOND: '1000', WS_RATE_BURST: '1000', ...storeEnv() }));

  it('a first frame that is not AUTH gets AUTH_FAILURE not_authenticated and close 4401 at once, not at the AUTH deadline', async () => {
    for (const first of [
      (d: TestDevice) => d.send({ type: T.HEARTBEAT, payload: { client_time: 1 }, correlation_id: 'c0' }),
      (d: TestDevice) => d.sendRaw('{"type": 5, "payload": '),
    ]) {
      const d = await connectDevice(started().wsUrl);
      const t0 = Date.now();
      first(d);
      expect(await d.closed).toBe(4401);
      expect(Date.now() - t0).toBeLessThan(1000); // the deadline here is 5 s
      expect(d.frames.map((f) => f.type)).toEqual([T.AUTH_FAILURE]);
      expect(d.frames[0].payload).toMatchObject({ code: 'not_authenticated' });
    }
  });

  it('frames sent during a re-AUTH (token refresh) are processed at once: no stall, no 4400 past 64 of them', async () => {
    const n = started();
    const sid = randomUUID();
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token: await n.token('alice'), device_id: 'phone', session_id: sid });
    await d.next(T.SNAPSHOT_RESPONSE);
    const fresh = await n.token('alice');
    slowTokens(n, 2000);
    const from = d.frames.length;
    const BURST = 200;
    d.send({ type: T.AUTH, correlation_id: 'refresh', payload: { token: fresh, device_id: 'phone', session_id: sid } });
    for (let i = 0; i < BURST; i++) d.send({ type: T.HEARTBEAT, correlation_id: `hb${i}`, payload: { client_time: i } });
    // Answered while the token is still being checked.
    await d.waitFor(() => d.ofType(T.HEARTBEAT_ACK).length === BURST, 1500, from);
    expect(d.ofType(T.AUTH_SUCCESS)).toHaveLength(1); // the first one only
    expect((await d.next(T.AUTH_SUCCESS, 5000, from)).correlation_id).toBe('refresh');
    expect(d.ofType(T.HEARTBEAT_ACK).map((f) => f.correlation_id)).toEqual(Array.from({ length: BURST }, (_, i) => `hb${i}`));
    expect(d.ofType(T.ERROR)).toHaveLength(0);
    expect(d.closeCode).toBeNull();
  });

  it('behind the first AUTH, 64 frames are held and answered after AUTH_SUCCESS; a 65th closes with 4400', async () => {
    const n = started();
    const token = await n.token('alice');
    slowTokens(n, 300);
    const burst = async (frames: number) => {
      const d = await connectDevice(n.wsUrl);
      d.send({ type: T.AUTH, payload: { token, device_id: 'phone', session_id: randomUUID() } });
      for (let i = 0; i < frames; i++) d.send({ type: T.HEARTBEAT, correlation_id: `hb${i}`, payload: { client_time: i } });
      return d;
    };
    const within = await burst(64);
    await within.waitFor(() => within.ofType(T.HEARTBEAT_ACK).length === 64, 5000);
    expect(within.frames[0].type).toBe(T.AUTH_SUCCESS);
    expect(within.closeCode).toBeNull();
    const over = await burst(65);
    expect(await over.closed).toBe(4400);
    expect(over.ofType(T.HEARTBEAT_ACK)).toHaveLength(0);
  });

  it('the device\'s count failing during AUTH (in the claim on Redis, presence\'s own on the embedded store): AUTH_FAILURE store_unavailable, no unhandled rejection, nothing left joined, the node serves the next AUTH', async () => {
    // The join is undone like any failed one (hub left, nothing counted), and the failure never
    // escapes as an unhandled rejection (that would take the process down).
    const n = started();
    const unhandled = jest.fn();
    process.on('unhandledRejection', unhandled);
    try {
      // The count: on Redis a step of the claim's script, on the embedded store presence's own.
      const down = async (): Promise<never> => {
        throw new StoreUnavailableError(new Error('presence down'));
      };
      const connect = n.node.store.kind === 'redis'
        ? jest.spyOn(n.node.store, 'claim').mockImplementationOnce(down)
        : jest.spyOn(n.node.presence, 'connect').mockImplementationOnce(down);
      const sid = randomUUID();
      const token = await n.token('pres-fail');
      const d = await connectDevice(n.wsUrl);
      await expect(d.auth({ token, session_id: sid, device_id: 'phone' })).rejects.toThrow(/store_unavailable/);
      expect(connect).toHaveBeenCalledTimes(1);
      await new Promise((r) => setTimeout(r, 50));
      expect(unhandled).not.toHaveBeenCalled();
      expect(n.node.hub.connsOf(sid)?.size ?? 0).toBe(0);
      const again = await connectDevice(n.wsUrl);
      const ok = await again.auth({ token, session_id: sid, device_id: 'phone' });
      expect(ok.payload).toMatchObject({ session_id: sid, devices: [expect.objectContaining({ device_id: 'phone' })] });
    } finally {
      process.off('unhandledRejection', unhandled);
    }
  });

  it('a device joining takes one count: in the claim on Redis (presence\'s own connect unused), after it on the embedded store; another user is counted nowhere and left in no session', async () => {
    const n = started();
    const claim = jest.spyOn(n.node.store, 'claim');
    const connect = jest.spyOn(n.node.presence, 'connect');
    const sid = randomUUID();
    const owner = await connectDevice(n.wsUrl);
    const ok = await owner.auth({ token: await n.token('alice'), session_id: sid, device_id: 'phone' });
    expect(ok.payload).toMatchObject({ devices: [expect.objectContaining({ device_id: 'phone', status: 'online', connections: 1 })] });
    expect(claim).toHaveBeenCalledTimes(1);
    expect(connect).toHaveBeenCalledTimes(n.node.store.kind === 'redis' ? 0 : 1);
    const intruder = await connectDevice(n.wsUrl);
    await expect(intruder.auth({ token: await n.token('mallory'), session_id: sid, device_id: 'laptop' })).rejects.toThrow(/forbidden/);
    expect(await intruder.closed).toBe(4403);
    expect(n.node.hub.connsOf(sid)?.size).toBe(1);
    expect((await n.node.presence.list(sid, Date.now())).map((d) => d.device_id)).toEqual(['phone']);
  });

  it('a socket whose AUTH is refused hears nothing of the session while its claim is in flight (no update, no device joining)', async () => {
    const n = started();
    const sid = randomUUID();
    const aliceToken = await n.token('alice');
    const phone = await connectDevice(n.wsUrl);
    await phone.auth({ token: aliceToken, session_id: sid, device_id: 'phone' });
    // Mallory's claim takes a while; meanwhile the session is busy.
    const claim = n.node.store.claim.bind(n.node.store);
    let inClaim: () => void = () => undefined;
    const claiming = new Promise<void>((r) => (inClaim = r));
    jest.spyOn(n.node.store, 'claim').mockImplementation(async (...args) => {
      if (args[1] === 'mallory') {
        inClaim();
        await new Promise((r) => setTimeout(r, 400));
      }
      return claim(...args);
    });
    const intruder = await connectDevice(n.wsUrl);
    intruder.send({ type: T.AUTH, payload: { token: await n.token('mallory'), session_id: sid, device_id: 'phone' } });
    await claiming;
    const tablet = await connectDevice(n.wsUrl); // DEVICE_JOINED to the session
    await tablet.auth({ token: aliceToken, session_id: sid, device_id: 'tablet' });
    phone.send({ type: T.STATE_UPDATE, correlation_id: 'w', payload: { key: 'mood', value: 'calm', operation: 'SET' } });
    await phone.next(T.STATE_UPDATE_ACK);
    await tablet.next(T.STATE_UPDATE);
    expect(await intruder.closed).toBe(4403);
    expect(intruder.frames.map((f) => f.type)).toEqual([T.AUTH_FAILURE]);
    expect(n.node.hub.connsOf(sid)?.size).toBe(2);
  });

  it('a change made just after the claim read the snapshot still reaches the joining socket (its subscription came first)', async () => {
    const n = started();
    const sid = randomUUID();
    const token = await n.token('alice');
    const claim = n.node.store.claim.bind(n.node.store);
    jest.spyOn(n.node.store, 'claim').mockImplementation(async (...args) => {
      const result = await claim(...args);
      // Another writer lands between the read (in the claim on Redis) and AUTH_SUCCESS.
      const res = await api(n.url, 'POST', '/session/incremental', { token, body: { session_id: sid, changes: { mood: 'calm' } } });
      expect(res.status).toBe(200);
      return result;
    });
    const d = await connectDevice(n.wsUrl);
    await d.auth({ token, session_id: sid, device_id: 'phone' });
    // Either the snapshot already has it (read after the write) or the update follows it.
    await d.waitFor(() => d.frames.some((f) => (f.type === T.SNAPSHOT_RESPONSE || f.type === T.STATE_UPDATE) && (f.payload as { version?: number }).version === 1), 3000);
  });

  it('a frame held while the first AUTH is in flight is decoded as it arrived: a binary frame stays binary', async () => {
    const n = started();
    const token = await n.token('alice');
    const sid = randomUUID();
    // After authentication, on a JSON socket, a binary frame must be UTF-8: this one is refused.
    const live = await connectDevice(n.wsUrl);
    await live.auth({ token, device_id: 'phone', session_id: sid });
    live.sendRaw(NOT_UTF8);
    expect((await live.next(T.ERROR)).payload.code).toBe('invalid_message');
    // Sent right behind AUTH, it is held until authentication settles, then refused the same way.
    slowTokens(n, 100);
    const d = await connectDevice(n.wsUrl);
    d.send({ type: T.AUTH, payload: { token, device_id: 'tablet', session_id: sid } });
    d.sendRaw(NOT_UTF8);
    d.send({ type: T.HEARTBEAT, correlation_id: 'after', payload: {} });
    expect((await d.next(T.HEARTBEAT_ACK)).correlation_id).toBe('after');
    expect(d.ofType(T.HEARTBEAT_ACK)).toHaveLength(1);
    expect(d.ofType(T.ERROR).map((e) => e.payload.code)).toEqual(['invalid_message']);
    expect(d.frames[0].type).toBe(T.AUTH_SUCCESS);
  });
});
