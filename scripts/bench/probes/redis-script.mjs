#!/usr/bin/env node
// Redis CPU per state update: runs N single-key SETs through RedisStore (the production mutation
// script) against a private redis-server, then reads INFO commandstats. Prints µs per call of the
// script and of a bare PUBLISH of the same frame for comparison.
//   node scripts/bench/probes/redis-script.mjs [N]
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { RedisStore, KeySpace, createRedis, whenReady, createLogger } = require('../../../packages/gateway/dist/index.js');
const Redis = require('ioredis');

const N = Number(process.argv[2] ?? 20000);
const port = await new Promise((res) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
try {
  for (let i = 0; ; i++) { try { const c = new Redis(port, { lazyConnect: true, retryStrategy: null }); c.on('error', () => undefined); await c.connect(); c.disconnect(); break; } catch { if (i > 100) throw new Error('redis did not start'); await new Promise((r) => setTimeout(r, 50)); } }
  const log = createLogger('silent', 'bench');
  const client = createRedis({ mode: 'single', url: `redis://127.0.0.1:${port}` }, log, 'command', 'bench');
  await whenReady(client, 5000);
  const store = new RedisStore(client, new KeySpace('b:'), { ttlSeconds: 604800, maxStateBytes: 1 << 20, logLength: 1000, logMaxBytes: 8 << 20, maxSessionsPerUser: 100, maxHandoffsPerSession: 20 });
  const sessions = Array.from({ length: 1000 }, () => randomUUID());
  const admin = new Redis(port);
  const run = async (count, corr) => {
    const inflight = [];
    for (let i = 0; i < count; i++) {
      const sid = sessions[i % sessions.length];
      inflight.push(store.mutate({ sessionId: sid, actor: { userId: 'u', admin: false }, ownerId: 'u', op: { op: 'set', key: 'k', value: { __lg: 1, t: Date.now(), q: i, p: 'x' } }, deviceId: 'd0', originNode: 'bench/0123456789abcdef', originConn: 1, correlationId: corr ? `c${i}` : undefined }));
      if (inflight.length >= 64) await Promise.all(inflight.splice(0));
    }
    await Promise.all(inflight);
  };
  await run(2000, true); // create sessions, warm up
  const perCall = async (corr) => {
    await admin.config('RESETSTAT');
    await run(N, corr);
    const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(await admin.info('commandstats'));
    return m ? Number(m[3]) : null;
  };
  const t0 = Date.now();
  const withCorr = await perCall(true);
  const wall = Date.now() - t0;
  const withoutCorr = await perCall(false);
  await admin.config('RESETSTAT');
  const frame = Buffer.alloc(180, 7);
  const pubs = [];
  for (let i = 0; i < N; i++) { pubs.push(admin.publish(`b:{${sessions[i % 1000]}}:ch`, frame)); if (pubs.length >= 64) await Promise.all(pubs.splice(0)); }
  await Promise.all(pubs);
  const pubStats = /cmdstat_publish:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(await admin.info('commandstats'));
  console.log(JSON.stringify({ updates: N, wall_ms: wall, script_usec_per_call: withCorr, script_usec_per_call_no_correlation_id: withoutCorr, publish_usec_per_call: pubStats ? Number(pubStats[3]) : null }));
  admin.disconnect(); client.disconnect(); await store.close();
} finally {
  server.kill('SIGKILL');
}
