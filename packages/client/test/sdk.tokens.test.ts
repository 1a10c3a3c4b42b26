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

/** A connected client whose token() mints `ttlSeconds` tokens, counting mints, sockets and disconnects. */
async function shortTokenClient(ttlSeconds: number, sessionId: string, refreshBeforeExpiryMs?: number) {
  const ws = countingWebSocket();
  const seen = { minted: 0, disconnects: [] as number[] };
  const c = sdkClient({
    url: node.wsUrl, deviceId: 'phone', sessionId, WebSocket: ws.WS, refreshBeforeExpiryMs,
    token: () => {
      seen.minted++;
      return tokens.signAccess('alice', 'user', ttlSeconds);
    },
  });
  c.on('disconnected', (d) => seen.disconnects.push(d.code));
  await c.connect();
  return { c, ws, seen };
}

describe('SessionClient token refresh (real gateway process)', () => {
  it('runs 30 s on 8-second tokens with no disconnect, writing throughout', async () => {
    const sid = randomUUID();
    const { c, ws, seen } = await shortTokenClient(8, sid);
    let writes = 0;
    const end = Date.now() + 30_000;
    while (Date.now() < end) {
      await c.increment('beats');
      writes++;
      await new Promise((r) => setTimeout(r, 500));
    }
    expect(seen.disconnects).toEqual([]);
    expect(ws.opened()).toBe(1);
    expect(c.status).toBe('connected');
    expect(seen.minted).toBeGreaterThanOrEqual(30 / 8); // refreshed about every half-life
    const snap = await api(node.url, 'GET', `/session/${sid}`, { token: await tokens.signAccess('alice', 'user') });
    expect(snap.body.state_data.beats).toBe(writes);
    expect(c.state.beats).toBe(writes);
  }, 45_000);

  it('with proactive refresh off, ERROR token_expired makes it re-AUTH in place', async () => {
    const { c, ws, seen } = await shortTokenClient(3, randomUUID(), 0);
    await new Promise((r) => setTimeout(r, 8000));
    await c.set('still', 'here');
    expect(seen.disconnects).toEqual([]);
    expect(ws.opened()).toBe(1);
    expect(seen.minted).toBeGreaterThanOrEqual(3);
  }, 20_000);
});
