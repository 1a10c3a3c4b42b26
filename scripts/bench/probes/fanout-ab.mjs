#!/usr/bin/env node
// Paired fan-out harness: gateway CPU per state update of two builds, A and B, side by side. One
// private redis-server, one gateway per build on it; each gets SESSIONS sessions × 3 devices (all on
// that gateway: device 0 writes, devices 1-2 receive through the bus), then rounds alternate A B /
// B A, each RATE writes/s for SECS seconds, open loop. CPU per update is the gateway's utime+stime
// (/proc) over the round divided by its writes, once every ACK and delivery is in. With NODES=2 each
// build runs two gateways and device 2 of every session sits on the second (the reference bench's
// cross-node delivery); CPU is then both gateways'. Prints every
// round and the median of the per-round B/A ratios (A against A read 1.008 and 1.02 here;
// single rounds spread ±15%, so trust medians of 10+ rounds, never one round), and each build's
// writer→device and ACK p99 per round (measured in this process, which also drives the load), and
// from the shared Redis (the builds take turns) writes per FCALL and Redis CPU per write.
//   node scripts/bench/probes/fanout-ab.mjs [dirA] [dirB]     (default: this checkout for both)
//   env: SESSIONS=300 RATE=3000 SECS=3 ROUNDS=12 NODES=1 FLAGS_A/FLAGS_B (node flags; default the service's own)
// Each dir must be a built checkout (npm run build).
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { processCpuUs as cpu } from '../lib/proc.mjs';
import { geomean, Latencies, median } from '../lib/stats.mjs';
import { mintAccessToken } from '../lib/ws.mjs';
const require = createRequire(import.meta.url);
const WebSocket = require('ws');
const Redis = require('ioredis');
const { commandCalls, gatewayNodeFlags, sleep, spawnNode, startRedis, TEST_JWT_SECRET } = require('../../../packages/testkit/dist/index.js');

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const dirs = [path.resolve(process.argv[2] ?? here), path.resolve(process.argv[3] ?? process.argv[2] ?? here)];
const E = process.env;
const SESSIONS = Number(E.SESSIONS ?? 300), RATE = Number(E.RATE ?? 3000), SECS = Number(E.SECS ?? 3), ROUNDS = Number(E.ROUNDS ?? 12);
const NODES = Math.min(2, Number(E.NODES ?? 1)); // gateways per build
// Each build runs with the flags its own entry names (as the service runs) unless FLAGS_A/FLAGS_B say otherwise.
const FLAGS = [E.FLAGS_A, E.FLAGS_B].map((f, i) => (f === undefined ? gatewayNodeFlags(path.join(dirs[i], 'packages/gateway/dist/main.js')) : f.split(' ').filter(Boolean)));

const cpuOf = (pids) => pids.reduce((sum, pid) => sum + cpu(pid), 0);

const gateways = [];
process.on('exit', () => { for (const g of gateways) for (const node of g.nodes) node.kill(); });

/** SESSIONS sessions × 3 authenticated devices, device j on ports[j] (or the last), with counters of what they receive. */
async function connect(ports) {
  const st = { acks: 0, deliveries: 0, errors: 0, ackMs: null, deliveryMs: null };
  const sessions = [];
  for (let s = 0; s < SESSIONS; s++) {
    const sid = randomUUID();
    const token = mintAccessToken(TEST_JWT_SECRET, `u-${ports[0]}-${s}`);
    const devices = [];
    for (let j = 0; j < 3; j++) {
      const ws = new WebSocket(`ws://127.0.0.1:${ports[Math.min(j, ports.length - 1)]}/ws`);
      await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
      await new Promise((res, rej) => {
        const on = (d) => {
          const m = JSON.parse(d);
          if (m.type === 8) { ws.off('message', on); res(); } else if (m.type === 9 || m.type === 6) rej(new Error(JSON.stringify(m)));
        };
        ws.on('message', on);
        ws.send(JSON.stringify({ type: 7, timestamp: Date.now(), payload: { token, device_id: `d${j}`, session_id: sid } }));
      });
      ws.on('message', (d) => {
        const m = JSON.parse(d);
        const t = m.type;
        if (t === 15) {
          st.acks++;
          st.ackMs.add(performance.now() - sentAt[Number(m.correlation_id.slice(1))]);
        } else if (t === 5) {
          st.deliveries++;
          st.deliveryMs.add(performance.now() - m.payload.value.t);
        } else if (t === 6) st.errors++;
      });
      devices.push(ws);
    }
    sessions.push(devices);
  }
  return { sessions, st };
}

let q = 0; // write counter across rounds: correlation ids never repeat (a repeat is a duplicate, not a write)
/** When write q was sent (performance.now()), for its ACK's latency; a delivery carries its own. */
const sentAt = [];
/** The shared Redis's write-path calls so far and its CPU (µs): the builds take turns, so a round's difference is its build's. */
const redisCounters = async () => ({ fcalls: await commandCalls(admin, 'fcall'), cpuUs: cpu(redis.pid) });

/**
 * One round of build `g`: its CPU per update, the round's writer→device and ACK p99 (ms), and on
 * the Redis side writes per FCALL and Redis CPU per write (µs).
 */
async function round(g) {
  const { st, sessions } = g;
  st.acks = 0; st.deliveries = 0; st.ackMs = new Latencies(RATE * SECS); st.deliveryMs = new Latencies(2 * RATE * SECS);
  let sent = 0;
  const r0 = await redisCounters();
  const c0 = cpuOf(g.pids), t0 = Date.now();
  await new Promise((res) => {
    let carry = 0;
    const timer = setInterval(() => {
      carry += RATE / 200;
      const n = Math.floor(carry); carry -= n;
      for (let i = 0; i < n; i++, sent++, q++) {
        const at = performance.now();
        sentAt[q] = at;
        sessions[q % SESSIONS][0].send(`{"type":5,"timestamp":${Date.now()},"payload":{"key":"k","value":{"t":${at},"q":${q},"p":"xxxxxxxxxxxxxxxx"},"operation":"SET"},"correlation_id":"c${q}"}`);
      }
      if (Date.now() - t0 >= SECS * 1000) { clearInterval(timer); res(); }
    }, 5);
  });
  const until = Date.now() + 5000;
  while ((st.acks < sent || st.deliveries < 2 * sent) && Date.now() < until) await sleep(20);
  if (st.acks < sent || st.deliveries < 2 * sent) throw new Error(`round incomplete: ${st.acks}/${sent} ACKs, ${st.deliveries}/${2 * sent} deliveries`);
  const us = (cpuOf(g.pids) - c0) / sent;
  const r1 = await redisCounters();
  return {
    us, p99: st.deliveryMs.summary().p99, ackP99: st.ackMs.summary().p99,
    // No FCALL on a Redis that refuses Functions (the write path then runs as a script).
    perCall: r1.fcalls > r0.fcalls ? sent / (r1.fcalls - r0.fcalls) : NaN, redisUs: (r1.cpuUs - r0.cpuUs) / sent,
  };
}

const redis = await startRedis();
const admin = new Redis(redis.url);
try {
  for (const [i, name] of ['a', 'b'].entries()) {
    // Nodes after the first get device 2 of every session, like the reference bench's second node.
    const nodes = [];
    for (let n = 0; n < NODES; n++) {
      nodes.push(await spawnNode({ REDIS_URL: redis.url, REDIS_PREFIX: `${name}:`, NODE_ID: `${name}${n}`, LOG_LEVEL: 'warn' }, { checkout: dirs[i], flags: FLAGS[i] }));
    }
    const ports = nodes.length === 1 ? [nodes[0].port] : [nodes[0].port, nodes[0].port, nodes[1].port];
    gateways.push({ nodes, pids: nodes.map((x) => x.proc.pid), ...(await connect(ports)) });
  }
  console.log(`A ${dirs[0]} ${FLAGS[0].join(' ')}\nB ${dirs[1]} ${FLAGS[1].join(' ')}\n${SESSIONS * 3} connections each on ${NODES} node(s), ${RATE} writes/s, ${SECS} s rounds`);
  // Heartbeats keep the idle devices present, as clients do.
  const beat = setInterval(() => { for (const g of gateways) for (const d of g.sessions) for (const ws of d) ws.send(`{"type":1,"payload":{"client_time":${Date.now()}}}`); }, 10_000);
  await round(gateways[0]); await round(gateways[1]); // warm-up
  const ratios = [], p99s = [[], []], ackP99s = [[], []], perCall = [[], []], redisUs = [[], []];
  for (let r = 0; r < ROUNDS; r++) {
    const res = [];
    for (const i of r % 2 ? [1, 0] : [0, 1]) res[i] = await round(gateways[i]);
    ratios.push(res[1].us / res[0].us);
    for (const i of [0, 1]) {
      p99s[i].push(res[i].p99); ackP99s[i].push(res[i].ackP99); perCall[i].push(res[i].perCall); redisUs[i].push(res[i].redisUs);
    }
    console.log(`round ${r + 1}: A ${res[0].us.toFixed(1)} µs/update, B ${res[1].us.toFixed(1)}, B/A ${ratios.at(-1).toFixed(3)}; ` +
      `p99 A ${res[0].p99.toFixed(1)} ms, B ${res[1].p99.toFixed(1)}; ACK p99 A ${res[0].ackP99.toFixed(1)}, B ${res[1].ackP99.toFixed(1)}; ` +
      `writes/FCALL A ${res[0].perCall.toFixed(1)}, B ${res[1].perCall.toFixed(1)}; Redis µs/write A ${res[0].redisUs.toFixed(1)}, B ${res[1].redisUs.toFixed(1)}`);
  }
  clearInterval(beat);
  const errors = gateways.map((g) => g.st.errors);
  console.log(`median B/A ${median(ratios).toFixed(3)}, geometric mean ${geomean(ratios).toFixed(3)}, over ${ROUNDS} rounds (ERROR frames: A ${errors[0]}, B ${errors[1]})`);
  console.log(`writer→device p99, median of rounds: A ${median(p99s[0]).toFixed(1)} ms, B ${median(p99s[1]).toFixed(1)}; ` +
    `ACK p99: A ${median(ackP99s[0]).toFixed(1)}, B ${median(ackP99s[1]).toFixed(1)}`);
  console.log(`writes per FCALL, median of rounds: A ${median(perCall[0]).toFixed(1)}, B ${median(perCall[1]).toFixed(1)}; ` +
    `Redis CPU per write: A ${median(redisUs[0]).toFixed(1)} µs, B ${median(redisUs[1]).toFixed(1)}`);
} finally {
  // SIGTERM and wait: a gateway run with --cpu-prof writes its profile on the way out.
  const nodes = gateways.flatMap((g) => g.nodes);
  for (const node of nodes) node.kill();
  await Promise.race([Promise.all(nodes.map((node) => node.exited)), sleep(10_000)]);
  admin.disconnect();
  await redis.stop();
}
process.exit(0);
