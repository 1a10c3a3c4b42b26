import { randomUUID } from 'node:crypto';
import { eventually, useNode } from '@harmonyflow/testkit';
import { httpBaseFromWsUrl, SessionClient, SessionError } from '../src';
import { closeClients, sdkClient } from './helpers';

const node = useNode();
afterEach(() => closeClients());

describe('SessionClient HTTP helpers', () => {
  it.each([
    ['ws://127.0.0.1:8080/ws', 'http://127.0.0.1:8080'],
    ['wss://api.example.com/ws', 'https://api.example.com'],
    ['wss://example.com/hf/ws?x=1', 'https://example.com/hf'],
    ['ws://[::1]:9000/ws/', 'http://[::1]:9000'],
  ])('derives the HTTP base of %s', (ws, http) => {
    expect(httpBaseFromWsUrl(ws)).toBe(http);
  });

  it('devices(), requestHandoff(), acceptHandoff() and resolveConflict() against a node', async () => {
    const sid = randomUUID();
    const token = await node().token('alice');
    const phone = sdkClient({ url: node().wsUrl, token, deviceId: 'phone', sessionId: sid, deviceType: 'mobile' });
    const web = sdkClient({ url: node().wsUrl, token: () => node().token('alice'), deviceId: 'web', sessionId: sid });
    await Promise.all([phone.connect(), web.connect()]);
    await phone.set('progress', 40);

    const devices = await phone.devices();
    expect(devices.map((d) => d.device_id).sort()).toEqual(['phone', 'web']);
    expect(devices.find((d) => d.device_id === 'phone')).toMatchObject({ status: 'online', device_type: 'mobile' });

    const requested = new Promise((resolve) => web.once('handoff', resolve));
    const completed = new Promise((resolve) => phone.once('handoff', resolve));
    const offer = await phone.requestHandoff('web');
    expect(offer).toMatchObject({ token: expect.any(String), source_device: 'phone', target_device: 'web' });
    await expect(requested).resolves.toEqual({ type: 'requested', token: offer.token, sourceDevice: 'phone' });
    const taken = await web.acceptHandoff(offer.token);
    expect(taken).toMatchObject({ valid: true, state_data: { progress: 40 }, version: 1, source_device: 'phone', target_device: 'web' });
    await expect(completed).resolves.toEqual({ type: 'completed', targetDevice: 'web' });
    const reused = await web.acceptHandoff(offer.token).catch((e: unknown) => e);
    expect(reused).toBeInstanceOf(SessionError);
    expect(reused).toMatchObject({ code: 'handoff_token_used', details: { status: 410 } });

    const merged = await web.resolveConflict('merge', { mood: 'calm' });
    expect(merged).toMatchObject({ state_data: { progress: 40, mood: 'calm' }, version: 2, strategy: 'merge' });
    await eventually(() => phone.version === 2 && phone.state.mood === 'calm');
  });

  it('HTTP helpers need a session id: given, or learnt on connect', async () => {
    const c = new SessionClient({ url: node().wsUrl, token: 't', deviceId: 'd', WebSocket: class {} as never });
    await expect(c.devices()).rejects.toMatchObject({ code: 'no_session' });
    const given = new SessionClient({ url: node().wsUrl, token: 'bad', deviceId: 'd', sessionId: randomUUID(), WebSocket: class {} as never });
    await expect(given.devices()).rejects.toMatchObject({ code: 'unauthorized', details: { status: 401 } });
  });
});
