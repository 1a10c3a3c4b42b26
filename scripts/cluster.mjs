#!/usr/bin/env node
// `npm run cluster`: a local cluster for humans — a private Redis, 3 gateway nodes and HAProxy
// (deploy/haproxy/haproxy.cfg.template), all on loopback. Prints the URLs and an admin token;
// Ctrl-C stops everything it started.
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { startRedis, spawnNode, startHaproxy, freePort, haproxyAvailable } = require('../packages/testkit/dist/index.js');
const { TokenService, loadConfig } = require('../packages/gateway/dist/index.js');

const NODES = Number(process.env.HF_CLUSTER_NODES ?? 3);
const secret = process.env.JWT_SECRET ?? randomBytes(24).toString('base64url');
const refreshSecret = process.env.JWT_REFRESH_SECRET ?? randomBytes(24).toString('base64url');
const started = [];

async function stopAll(code) {
  for (const s of started.reverse()) {
    try {
      await s();
    } catch {
      // keep stopping the rest
    }
  }
  process.exit(code);
}
process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));

try {
  if (!haproxyAvailable()) throw new Error('haproxy is not on PATH (Debian: apt-get install haproxy)');
  const redis = await startRedis();
  started.push(() => redis.stop());
  const env = { REDIS_URL: redis.url, JWT_SECRET: secret, JWT_REFRESH_SECRET: refreshSecret, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn', HOST: '127.0.0.1' };
  const nodes = [];
  for (let i = 1; i <= NODES; i++) {
    const n = await spawnNode({ ...env, NODE_ID: `local-${i}` });
    nodes.push(n);
    started.push(async () => {
      n.kill('SIGTERM');
      await n.exited;
    });
    n.proc.stderr.on('data', (d) => process.stderr.write(`[local-${i}] ${d}`));
  }
  const port = process.env.PORT ? Number(process.env.PORT) : await freePort();
  const lb = await startHaproxy(nodes.map((n) => n.port), { port });
  started.push(() => lb.stop());
  const tokens = new TokenService(loadConfig({ JWT_SECRET: secret, JWT_REFRESH_SECRET: refreshSecret }).jwt);
  const admin = await tokens.signAccess('admin', 'admin', 24 * 3600);
  const user = await tokens.signAccess('user-123', 'user', 24 * 3600);
  process.stdout.write(`
HarmonyFlow local cluster is up (Ctrl-C stops everything):
  load balancer   ${lb.url}   (WebSocket: ${lb.wsUrl})
  admin page      ${lb.url}/admin/
${nodes.map((n, i) => `  node local-${i + 1}    ${n.url}`).join('\n')}
  redis           ${redis.url}

  JWT_SECRET=${secret}
  JWT_REFRESH_SECRET=${refreshSecret}
  admin token (24h):    ${admin}
  user-123 token (24h): ${user}
`);
  await new Promise(() => {});
} catch (err) {
  process.stderr.write(`cluster: ${err instanceof Error ? err.message : String(err)}\n`);
  await stopAll(1);
}
