#!/usr/bin/env node
// Redis instructions per state update, counted by valgrind's callgrind (deterministic: unlike CPU
// time on a shared machine, the count does not move between runs, so small changes to the Lua write
// path can be compared). Runs a private redis-server under callgrind twice — warm-up only, then
// warm-up plus M single-key SETs with correlation ids through RedisStore — and prints the
// difference per update, for writes one per call and `inflight` per call (batched).
//   node scripts/bench/probes/redis-instructions.mjs [M=2000] [sessions=1000]
// sessions=10 gives each session ~300 writes (dedupe generations rotate, as in the reference
// fan-out, where each session writes ~10 times a second). Redis runs with hz 1 so that its timer
// work, which grows with the (valgrind-slowed) wall time, stays out of the count. Needs valgrind.
// REDIS_BIN=<path> runs another redis-server build (one built with symbols, `make OPTIMIZATION='-O2 -g'`,
// names the Lua VM's functions); KEEP=1 keeps the callgrind files for callgrind_annotate.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import net from 'node:net';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const { RedisStore, KeySpace, createRedis, whenReady, createLogger } = require('../../../packages/gateway/dist/index.js');
const Redis = require('ioredis');

const M = Number(process.argv[2] ?? 2000);
const S = Number(process.argv[3] ?? 1000);
const dir = mkdtempSync(path.join(tmpdir(), 'hf-cg-'));

const freePort = () => new Promise((res) => { const s = net.createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => res(p)); }); });

/** Instructions Redis executed for a warm-up (one write per session) plus `count` writes, `inflight` at a time. */
async function instructions(count, inflight) {
  const port = await freePort();
  const out = path.join(dir, `cg.${port}.out`);
  const server = spawn('valgrind', ['--tool=callgrind', `--callgrind-out-file=${out}`, process.env.REDIS_BIN ?? 'redis-server', '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--hz', '1'], { stdio: 'ignore' });
  const exited = new Promise((r) => server.on('exit', r));
  try {
    for (let i = 0; ; i++) {
      try { const c = new Redis(port, { lazyConnect: true, retryStrategy: null }); c.on('error', () => undefined); await c.connect(); c.disconnect(); break; } catch {
        if (i > 400) throw new Error('redis did not start under valgrind');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const client = createRedis({ mode: 'single', url: `redis://127.0.0.1:${port}` }, createLogger('silent', 'bench'), 'command', 'bench');
    await whenReady(client, 20000);
    const store = new RedisStore(client, new KeySpace('b:'), { ttlSeconds: 604800, maxStateBytes: 1 << 20, logLength: 1000, logMaxBytes: 8 << 20, maxSessionsPerUser: 100, maxHandoffsPerSession: 20 });
    const sessions = Array.from({ length: S }, () => randomUUID());
    const write = (i) => {
      const s = i % S;
      return store.mutate({ sessionId: sessions[s], actor: { userId: `u${s}`, admin: false }, ownerId: `u${s}`, op: { op: 'set', key: 'k', value: { __lg: 1, t: Date.now(), q: i, p: 'x' } }, deviceId: 'd0', originNode: 'bench/0123456789abcdef', originConn: 1, correlationId: `c${i}` })
        .then((r) => { if (r.status !== 'ok' || r.duplicate) throw new Error(`write ${i} was not applied: ${JSON.stringify(r)}`); });
    };
    // At most 8 in flight: under valgrind a deep queue would outlast the client's command timeout.
    const writes = async (from, n, inflight) => {
      for (let i = 0; i < n; i += inflight) {
        const batch = [];
        for (let j = i; j < Math.min(n, i + inflight); j++) batch.push(write(from + j));
        await Promise.all(batch);
      }
    };
    await writes(0, S, 8);
    await writes(S, count, inflight);
    client.disconnect();
    await store.close();
  } finally {
    server.kill('SIGTERM');
    await exited;
  }
  return Number(/summary: (\d+)/.exec(readFileSync(out, 'utf8'))[1]);
}

try {
  const base = await instructions(0, 1);
  const result = { writes: M, sessions: S };
  for (const inflight of [1, 8]) result[`instructions_per_update_${inflight}_per_call`] = Math.round((await instructions(M, inflight) - base) / M);
  console.log(JSON.stringify(result));
} finally {
  if (process.env.KEEP === '1') console.log(`callgrind files kept in ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
