import { randomUUID } from 'node:crypto';
import { api, spawnNode, testTokens, type NodeProcess } from '@harmonyflow/testkit';
import { closeClients, countingWebSocket, sdkClient } from './helpers';

// Short tokens against a real gateway process whose re-AUTH grace is short too: a client that
// did not refresh in place would be closed (4401) within a second of each expiry.
const tokens = testTokens();
let node: NodeProcess;

beforeAll(async () => {
  node = await spawnNode({ LOG_LEVEL: 'warn', TOKEN_GRACE_MS: '1000' });
});
afterAll(async () => {
  closeClients();
  node.kill('SIGKILL');
  await node.exited;
});

describe('SessionClient token refresh (real gateway process)', () => {
  it('runs 30 s on 8-second tokens with no disconnect, writing throughout', async () => {
    const sid = randomUUID();
    const ws = countingWebSocket();
    let minted = 0;
    const c = sdkClient({
      url: node.wsUrl, deviceId: 'phone', sessionId: sid, WebSocket: ws.WS,
      token: () => {
        minted++;
        return tokens.signAccess('alice', 'user', 8);
      },
    });
    const disconnects: number[] = [];
    c.on('disconnected', (d) => disconnects.push(d.code));
    await c.connect();
    let writes = 0;
    const end = Date.now() + 30_000;
    while (Date.now() < end) {
      await c.increment('beats');
      writes++;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(disconnects).toEqual([]);
    expect(ws.opened()).toBe(1);
    expect(c.status).toBe('connected');
    expect(minted).toBeGreaterThanOrEqual(30 / 8); // refreshed about every half-life
    const snap = await api(node.url, 'GET', `/session/${sid}`, { token: await tokens.signAccess('alice', 'user') });
    expect(snap.body.state_data.beats).toBe(writes);
    expect(c.state.beats).toBe(writes);
  }, 45_000);

  it('with proactive refresh off, ERROR token_expired makes it re-AUTH in place', async () => {
    const ws = countingWebSocket();
    let minted = 0;
    const c = sdkClient({
      url: node.wsUrl, deviceId: 'phone', sessionId: randomUUID(), WebSocket: ws.WS, refreshBeforeExpiryMs: 0,
      token: () => {
        minted++;
        return tokens.signAccess('alice', 'user', 3);
      },
    });
    const disconnects: number[] = [];
    c.on('disconnected', (d) => disconnects.push(d.code));
    await c.connect();
    await new Promise((r) => setTimeout(r, 8000));
    await c.set('still', 'here');
    expect(disconnects).toEqual([]);
    expect(ws.opened()).toBe(1);
    expect(minted).toBeGreaterThanOrEqual(3);
  }, 20_000);
});
