import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { api, eventually, freePort, startNode, startRedis, type PrivateRedis, type StartedNode } from '@harmonyflow/testkit';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/log';
import { createRedis, whenReady } from '../src/store/redisClient';

/** Temporary directories of this file, removed once its servers and nodes have stopped. */
const scratchDirs: string[] = [];

/** A throw-away CA and a server certificate for 127.0.0.1/localhost, made with openssl. */
function makeCertificates(): { dir: string; ca: string; cert: string; key: string } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-tls-'));
  scratchDirs.push(dir);
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=hf-test-ca');
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('srv.key'), '-out', f('srv.csr'), '-subj', '/CN=localhost');
  writeFileSync(f('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', f('srv.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('srv.pem'), '-days', '2', '-extfile', f('ext.cnf'));
  return { dir, ca: f('ca.pem'), cert: f('srv.pem'), key: f('srv.key') };
}

async function metricLines(url: string, name: string): Promise<string[]> {
  const r = await api(url, 'GET', '/metrics');
  return String(r.body).split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('Redis connection settings against real servers', () => {
  const nodes: StartedNode[] = [];
  const servers: PrivateRedis[] = [];
  afterAll(async () => {
    for (const n of nodes) await n.stop();
    for (const s of servers) await s.stop();
    for (const d of scratchDirs) rmSync(d, { recursive: true, force: true });
  });

  it('REDIS_URL without a password + REDIS_PASSWORD reaches a password-protected Redis; hf_redis_connected follows it', async () => {
    const password = 'p@ss:w%rd with spaces';
    const redis = await startRedis(['--requirepass', password]);
    servers.push(redis);
    const n = await startNode({ REDIS_URL: redis.url, REDIS_PASSWORD: password });
    nodes.push(n);
    expect((await api(n.url, 'GET', '/health')).body).toMatchObject({ redis: 'up' });
    expect(await metricLines(n.url, 'hf_redis_connected')).toEqual(expect.arrayContaining(['hf_redis_connected{role="command"} 1', 'hf_redis_connected{role="subscriber"} 1']));

    await redis.kill();
    await eventually(async () => (await metricLines(n.url, 'hf_redis_connected')).includes('hf_redis_connected{role="command"} 0'), 5000);
    await redis.restart();
    await eventually(async () => (await metricLines(n.url, 'hf_redis_connected')).join() === 'hf_redis_connected{role="command"} 1,hf_redis_connected{role="subscriber"} 1', 10_000);
  });

  it('a wrong REDIS_PASSWORD never gets ready', async () => {
    const redis = await startRedis(['--requirepass', 'right']);
    servers.push(redis);
    const cfg = loadConfig({ REDIS_URL: redis.url, REDIS_PASSWORD: 'wrong' });
    const client = createRedis(cfg.redis!, createLogger('silent', 't'), 'command', 't');
    await expect(whenReady(client, 1500)).rejects.toThrow(/not ready/);
    client.disconnect();
  });

  const HAVE_OPENSSL = spawnSync('openssl', ['version']).status === 0;
  if (!HAVE_OPENSSL) console.warn('SKIPPED Redis TLS tests: openssl is not installed (it makes the test certificates)');
  (HAVE_OPENSSL ? describe : describe.skip)('TLS', () => {
    const tls = HAVE_OPENSSL ? makeCertificates() : { dir: '', ca: '', cert: '', key: '' };
    const tlsArgs = (port: number) => ['--tls-port', String(port), '--tls-cert-file', tls.cert, '--tls-key-file', tls.key, '--tls-ca-cert-file', tls.ca, '--tls-auth-clients', 'no'];

    it('rediss:// with REDIS_TLS_CA_FILE: a node runs on it', async () => {
      const port = await freePort();
      servers.push(await startRedis(tlsArgs(port)));
      const n = await startNode({ REDIS_URL: `rediss://127.0.0.1:${port}`, REDIS_TLS_CA_FILE: tls.ca });
      nodes.push(n);
      expect((await api(n.url, 'GET', '/health')).body).toMatchObject({ redis: 'up' });
    });

    it('verifies the server certificate: without the CA the connection never gets ready', async () => {
      const port = await freePort();
      servers.push(await startRedis(tlsArgs(port)));
      const client = createRedis(loadConfig({ REDIS_URL: `rediss://127.0.0.1:${port}` }).redis!, createLogger('silent', 't'), 'command', 't');
      await expect(whenReady(client, 1500)).rejects.toThrow(/not ready/);
      client.disconnect();
    });

    it('Redis Cluster over TLS (REDIS_TLS=1): a node runs on it, sharded pub/sub included', async () => {
      const port = await freePort();
      const conf = path.join(tls.dir, `nodes-${port}.conf`);
      const redis = await startRedis([...tlsArgs(port), '--tls-cluster', 'yes', '--cluster-enabled', 'yes', '--cluster-config-file', conf, '--cluster-announce-ip', '127.0.0.1']);
      servers.push(redis);
      expect(spawnSync('redis-cli', ['-p', String(redis.port), 'cluster', 'addslotsrange', '0', '16383'], { encoding: 'utf8' }).stdout).toContain('OK');
      await eventually(() => spawnSync('redis-cli', ['-p', String(redis.port), 'cluster', 'info'], { encoding: 'utf8' }).stdout.includes('cluster_state:ok'), 10_000);
      const n = await startNode({ REDIS_CLUSTER_NODES: `127.0.0.1:${port}`, REDIS_TLS: '1', REDIS_TLS_CA_FILE: tls.ca });
      nodes.push(n);
      expect((await api(n.url, 'GET', '/health')).body).toMatchObject({ redis: 'up' });
      // /ready includes the bus canary: a frame through sharded pub/sub over TLS came back.
      await eventually(async () => (await api(n.url, 'GET', '/ready')).status === 200, 10_000);
    });
  });
});
