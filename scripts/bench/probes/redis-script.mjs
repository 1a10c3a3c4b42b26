#!/usr/bin/env node
// Redis cost per state update: runs N single-key SETs over 1000 sessions through RedisStore (the
// production mutation script) against a private redis-server, one at a time (one update per script
// call, as under light load) and 64 in flight (batched), then reads INFO commandstats and INFO cpu.
// Prints per update: script command time, nested commands, Redis CPU; and a bare PUBLISH's time.
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
  let round = 0;
  /** `count` single-key SETs spread over the sessions, `inflight` at a time (1: one per script call). */
  const run = async (count, corr, inflight) => {
    round++;
    const pending = [];
    for (let i = 0; i < count; i++) {
      // One owner per session: the per-user session quota must not turn writes into refusals.
      const s = i % sessions.length;
      const user = `u${s}`;
      pending.push(store.mutate({ sessionId: sessions[s], actor: { userId: user, admin: false }, ownerId: user, op: { op: 'set', key: 'k', value: { __lg: 1, t: Date.now(), q: i, p: 'x' } }, deviceId: 'd0', originNode: 'bench/0123456789abcdef', originConn: 1, correlationId: corr ? `c${round}-${i}` : undefined }).then((r) => {
        if (r.status !== 'ok' || r.duplicate) throw new Error(`write ${i} was not applied: ${JSON.stringify(r)}`);
      }));
      if (pending.length >= inflight) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
  };
  const cpu = async () => {
    const info = await admin.info('cpu');
    return Number(/used_cpu_user_main_thread:([\d.]+)/.exec(info)[1]) + Number(/used_cpu_sys_main_thread:([\d.]+)/.exec(info)[1]);
  };
  /** Redis figures per update: script command time, nested commands, CPU of the whole process. */
  const measure = async (corr, inflight) => {
    await admin.config('RESETSTAT');
    const c0 = await cpu();
    await run(N, corr, inflight);
    const cpuUs = ((await cpu()) - c0) * 1e6 / N;
    const stats = await admin.info('commandstats');
    // The write path is a Redis Function (FCALL), or a script (EVALSHA) on a Redis that refuses those.
    const script = /cmdstat_(?:fcall|evalsha):calls=(\d+),usec=(\d+)/.exec(stats);
    let nested = 0;
    for (const m of stats.matchAll(/cmdstat_(\w+):calls=(\d+)/g)) if (!['fcall', 'evalsha', 'config', 'info'].includes(m[1])) nested += Number(m[2]);
    return {
      updates_per_script_call: Number((N / Number(script[1])).toFixed(1)),
      script_us_per_update: Number((Number(script[2]) / N).toFixed(1)),
      nested_commands_per_update: Number((nested / N).toFixed(1)),
      redis_cpu_us_per_update: Number(cpuUs.toFixed(1)),
    };
  };
  await run(2000, true, 64); // create the sessions, warm up
  const results = {
    one_at_a_time: await measure(true, 1),
    one_at_a_time_no_correlation_id: await measure(false, 1),
    pipelined_64: await measure(true, 64),
  };
  await admin.config('RESETSTAT');
  const frame = Buffer.alloc(180, 7);
  const pubs = [];
  for (let i = 0; i < N; i++) { pubs.push(admin.publish(`b:{${sessions[i % 1000]}}:ch`, frame)); if (pubs.length >= 64) await Promise.all(pubs.splice(0)); }
  await Promise.all(pubs);
  const pubStats = /cmdstat_publish:calls=(\d+),usec=(\d+),usec_per_call=([\d.]+)/.exec(await admin.info('commandstats'));
  console.log(JSON.stringify({ updates: N, ...results, bare_publish_us_per_call: pubStats ? Number(pubStats[3]) : null }));
  admin.disconnect(); client.disconnect(); await store.close();
} finally {
  server.kill('SIGKILL');
}
