import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type KeyLike } from 'jose';
import { api, spawnNode, startNode, type StartedNode } from '@harmonyflow/testkit';

describe('identity-provider tokens (JWT_JWKS_URL, RS256/ES256)', () => {
  let jwks: http.Server;
  let n: StartedNode;
  let rsa: KeyLike;
  let ec: KeyLike;
  let rogue: KeyLike;
  beforeAll(async () => {
    const r = await generateKeyPair('RS256');
    const e = await generateKeyPair('ES256');
    rsa = r.privateKey;
    ec = e.privateKey;
    rogue = (await generateKeyPair('RS256')).privateKey;
    const keys = [{ ...(await exportJWK(r.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' }, { ...(await exportJWK(e.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' }];
    jwks = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ keys }));
    });
    await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve));
    const port = (jwks.address() as AddressInfo).port;
    n = await startNode({ JWT_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`, JWT_ISSUER: 'https://idp.test', JWT_AUDIENCE: 'harmonyflow' });
  });
  afterAll(async () => {
    await n.stop();
    jwks.closeAllConnections();
    await new Promise((r) => jwks.close(r));
  });

  const idpToken = (key: KeyLike, alg: string, kid: string, claims: Record<string, unknown> = {}, iss = 'https://idp.test', aud = 'harmonyflow') =>
    new SignJWT({ role: 'user', ...claims }).setProtectedHeader({ alg, kid }).setSubject('idp-user').setIssuer(iss).setAudience(aud).setIssuedAt().setExpirationTime('5m').sign(key);

  it('accepts RS256 and ES256 tokens signed by the provider\'s keys', async () => {
    for (const token of [await idpToken(rsa, 'RS256', 'rsa-1'), await idpToken(ec, 'ES256', 'ec-1')]) {
      const r = await api(n.url, 'POST', '/session/snapshot', { token, body: { session_id: randomUUID(), state_data: { via: 'idp' } } });
      expect(r.status).toBe(201);
      expect(r.body.user_id).toBe('idp-user');
    }
  });

  it('refuses wrong issuer, wrong audience and keys not in the set', async () => {
    const id = randomUUID();
    expect((await api(n.url, 'GET', `/session/${id}`, { token: await idpToken(rsa, 'RS256', 'rsa-1', {}, 'https://evil.test') })).status).toBe(401);
    expect((await api(n.url, 'GET', `/session/${id}`, { token: await idpToken(rsa, 'RS256', 'rsa-1', {}, 'https://idp.test', 'other') })).status).toBe(401);
    expect((await api(n.url, 'GET', `/session/${id}`, { token: await idpToken(rogue, 'RS256', 'rsa-1') })).status).toBe(401);
  });

  it('still accepts the service\'s own HS256 tokens', async () => {
    expect((await api(n.url, 'GET', `/session/${randomUUID()}`, { token: await n.token('alice') })).status).toBe(404);
  });
});

describe('a slow identity provider and a failing request body', () => {
  it('a body refused while the token is still being checked (too large, aborted) does not take the node down', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const keys = [{ ...(await exportJWK(publicKey)), kid: 'slow-1', alg: 'RS256', use: 'sig' }];
    // Key set fetches take a while: authentication outlasts the body's failure.
    const slow = http.createServer((_req, res) => setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ keys }));
    }, 400));
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const node = await spawnNode({ JWT_JWKS_URL: `http://127.0.0.1:${(slow.address() as AddressInfo).port}/jwks`, LOG_LEVEL: 'warn' });
    try {
      const token = await new SignJWT({ role: 'user' }).setProtectedHeader({ alg: 'RS256', kid: 'slow-1' }).setSubject('u').setIssuedAt().setExpirationTime('5m').sign(privateKey);
      const tooLarge = await rawRequest(node.port, `POST /session/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n{`);
      expect(tooLarge).toMatch(/^HTTP\/1\.1 413/);
      // Aborted mid-body while the key set is still being fetched.
      await new Promise<void>((resolve) => {
        const s = net.connect(node.port, '127.0.0.1', () => {
          s.write(`POST /session/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 5000\r\n\r\n{"session_id":`);
          setTimeout(() => { s.destroy(); resolve(); }, 50);
        });
      });
      await new Promise((r) => setTimeout(r, 800));
      expect(node.proc.exitCode).toBeNull();
      expect((await api(node.url, 'GET', '/health')).status).toBe(200);
    } finally {
      node.kill('SIGKILL');
      await node.exited;
      slow.closeAllConnections();
      await new Promise((r) => slow.close(r));
    }
  }, 20_000);
});

function rawRequest(port: number, head: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(head));
    let out = '';
    s.on('data', (d) => (out += d.toString()));
    s.on('close', () => resolve(out));
    s.on('error', reject);
    setTimeout(() => s.destroy(), 5000);
  });
}
