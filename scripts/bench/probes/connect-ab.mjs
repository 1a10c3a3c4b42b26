#!/usr/bin/env node
// Paired connect harness: gateway and Redis CPU per connection of two builds, A and B, side by side.
// One private redis-server, one gateway per build on it. Rounds alternate A B / B A; in a round a
// build gets CONNS new connections (CONNS/2 new sessions × 2 devices, as the reference bench's
// conns scenario: AUTH names the session, no last_version, so each gets a snapshot), at most
// CONCURRENCY handshakes in flight. CPU per connect is the process's utime+stime (/proc) from the
// first handshake to the last snapshot, divided by CONNS; the Redis commands each connect cost come
// from INFO commandstats over the same span. Then the round's sockets close: CPU per close is the
// same measure from the first close to half a second after the last.
// Prints every round and the median of the per-round B/A ratios.
//   node scripts/bench/probes/connect-ab.mjs [dirA] [dirB]     (default: this checkout for both)
//   env: CONNS=2000 CONCURRENCY=100 ROUNDS=12 FLAGS_A/FLAGS_B (node flags; default the service's own)
// Each dir must be a built checkout (npm run build).
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { processCpuUs as cpu } from '../lib/proc.mjs';
import { geomean, median } from '../lib/stats.mjs';
import { mintAccessToken } from '../lib/ws.mjs';
const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const Redis = require('ioredis');
const { commandCallCounts, gatewayNodeFlags, sleep, spawnNode, startRedis, TEST_JWT_SECRET } = require('../../../packages/testkit/dist/index.js');

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dirs = [path.resolve(process.argv[2] ?? here), path.resolve(process.argv[3] ?? process.argv[2] ?? here)];
const E = process.env;
const CONNS = Number(E.CONNS ?? 2000), CONCURRENCY = Number(E.CONCURRENCY ?? 100), ROUNDS = Number(E.ROUNDS ?? 12);
const FLAGS = [E.FLAGS_A, E.FLAGS_B].map((f, i) => (f === undefined ? gatewayNodeFlags(path.join(dirs[i], 'packages/gateway/dist/main.js')) : f.split(' ').filter(Boolean)));


/** One device: open, AUTH, wait for AUTH_SUCCESS and the snapshot. */
function open(port, token, sid, device) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`);
    let authed = false;
    ws.once('error', reject);
    ws.once('open', () => ws.send(`{"type":7,"timestamp":${Date.now()},"payload":{"token":"${token}","device_id":"${device}","session_id":"${sid}","device_type":"mobile","device_name":"x"}}`));
    ws.on('message', (d) => {
      const t = JSON.parse(d).type;
      if (t === 8) authed = true;
      else if (t === 4 && authed) resolve(ws);
      else if (t === 9 || t === 6) reject(new Error(String(d)));
    });
  });
}

let serial = 0;
async function round(g, redis, redisPid) {
  const jobs = [];
  for (let s = 0; s < CONNS / 2; s++) {
    const sid = randomUUID(), token = mintAccessToken(TEST_JWT_SECRET, `u-${serial++}`);
    jobs.push([token, sid, 'd0'], [token, sid, 'd1']);
  }
  const before = await commandCallCounts(redis);
  const c0 = cpu(g.pid), r0 = cpu(redisPid);
  const sockets = [];
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < jobs.length) {
      const [token, sid, dev] = jobs[next++];
      sockets.push(await open(g.port, token, sid, dev));
    }
  }));
  const us = (cpu(g.pid) - c0) / CONNS, redisUs = (cpu(redisPid) - r0) / CONNS;
  const after = await commandCallCounts(redis);
  const calls = [...after].map(([k, v]) => [k, (v - (before.get(k) ?? 0)) / CONNS]).filter(([, v]) => v > 0.01);
  // The close: each socket's count taken back (presence script, DEVICE_LEFT) and its session left.
  const c1 = cpu(g.pid), r1 = cpu(redisPid);
  for (const ws of sockets) ws.close();
  while (sockets.some((ws) => ws.readyState !== WebSocket.CLOSED)) await sleep(20);
  await sleep(500);
  const closeUs = (cpu(g.pid) - c1) / CONNS, closeRedisUs = (cpu(redisPid) - r1) / CONNS;
  return { us, redisUs, calls, closeUs, closeRedisUs };
}

const redisProc = await startRedis();
const gateways = [];
try {
  const redis = new Redis(redisProc.url);
  const redisPid = redisProc.pid;
  for (const [i, name] of ['a', 'b'].entries()) {
    const node = await spawnNode({ REDIS_URL: redisProc.url, REDIS_PREFIX: `${name}:`, NODE_ID: name, LOG_LEVEL: 'warn' }, { checkout: dirs[i], flags: FLAGS[i] });
    gateways.push({ node, port: node.port, pid: node.proc.pid });
  }
  console.log(`A ${dirs[0]} ${FLAGS[0].join(' ')}\nB ${dirs[1]} ${FLAGS[1].join(' ')}\n${CONNS} connections per round, ${CONCURRENCY} in flight`);
  await round(gateways[0], redis, redisPid); await round(gateways[1], redis, redisPid); // warm-up
  const ratios = [], redisRatios = [], closeRatios = [], closeRedisRatios = [];
  let calls = [];
  for (let r = 0; r < ROUNDS; r++) {
    const res = [];
    for (const i of r % 2 ? [1, 0] : [0, 1]) res[i] = await round(gateways[i], redis, redisPid);
    ratios.push(res[1].us / res[0].us);
    redisRatios.push(res[1].redisUs / res[0].redisUs);
    closeRatios.push(res[1].closeUs / res[0].closeUs);
    closeRedisRatios.push(res[1].closeRedisUs / res[0].closeRedisUs);
    calls = res.map((x) => x.calls);
    console.log(`round ${r + 1}: A ${res[0].us.toFixed(0)} µs/connect (Redis ${res[0].redisUs.toFixed(0)}), B ${res[1].us.toFixed(0)} (Redis ${res[1].redisUs.toFixed(0)}), B/A ${ratios.at(-1).toFixed(3)}; ` +
      `close A ${res[0].closeUs.toFixed(0)} (Redis ${res[0].closeRedisUs.toFixed(0)}), B ${res[1].closeUs.toFixed(0)} (Redis ${res[1].closeRedisUs.toFixed(0)})`);
  }
  for (const [i, name] of ['A', 'B'].entries()) console.log(`Redis commands per connect, ${name} (last round): ${calls[i].map(([k, v]) => `${k} ${v.toFixed(2)}`).join(', ')}`);
  console.log(`median B/A ${median(ratios).toFixed(3)} gateway, ${median(redisRatios).toFixed(3)} Redis, over ${ROUNDS} rounds ` +
    `(geometric means ${geomean(ratios).toFixed(3)}, ${geomean(redisRatios).toFixed(3)})`);
  console.log(`close: median B/A ${median(closeRatios).toFixed(3)} gateway, ${median(closeRedisRatios).toFixed(3)} Redis`);
  redis.disconnect();
} finally {
  // SIGTERM and wait: a gateway run with --cpu-prof writes its profile on the way out.
  for (const g of gateways) g.node.kill();
  await Promise.race([Promise.all(gateways.map((g) => g.node.exited)), sleep(10_000)]);
  await redisProc.stop();
}
process.exit(0);
