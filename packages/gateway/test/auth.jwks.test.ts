import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT, exportJWK, generateKeyPair, type KeyLike } from 'jose';
import { api, startNode, type StartedNode } from '@harmonyflow/testkit';

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
