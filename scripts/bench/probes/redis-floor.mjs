#!/usr/bin/env node
// What do the features this service puts in its atomic write cost Redis, above the bare minimum?
// Drives one private redis-server at RATE writes/s for SECS seconds, batched per 2 ms tick as the
// gateways batch per event-loop turn, with two subscriber connections on every session's channel
// (the two nodes of the reference fan-out), and prints Redis's CPU (user + system, from /proc) per
// write for:
//   publish  — a bare PUBLISH of a 180-byte frame, pipelined per tick: what the `uws` reference
//              gateway asks of Redis (it stores nothing);
//   floor    — a lower bound for a script in the shape of SPEC §1's atomic step: it reads the
//              version, writes the key, bumps the version, appends to the log (trimmed,
//              approximately), refreshes the expiry (amortised, once in 64 writes) and publishes a
//              180-byte frame, for a batch of writes in one FCALL. It compares no base version and
//              keeps no per-key versions (which SPEC §1 and §4 need), and has no ownership, dedupe,
//              size accounting or epochs;
//   product  — this service's write path (RedisStore, lua/mutate.lua) with a correlation id per
//              write, as the reference bench's load generator sends them; product_no_dedupe the
//              same without one (no dedupe records). The store batches as it does in the gateway
//              (a turn's writes in one call, one call in flight).
// The reference bench's saturated machine makes every variant dearer than here, a bare PUBLISH
// most: compare product with floor here, not floor with the bench's `uws`.
//   node scripts/bench/probes/redis-floor.mjs      env: RATE=5000 SECS=8 SESSIONS=1000 ROUNDS=2
import { randomUUID } from 'node:crypto';
import { createRequire } from 'node:module';
import { processCpuUs } from '../lib/proc.mjs';
import { median } from '../lib/stats.mjs';
const require = createRequire(import.meta.url);
const { RedisStore, KeySpace, createRedis, whenReady, createLogger } = require('../../../packages/gateway/dist/index.js');
const { sleep, startRedis } = require('../../../packages/testkit/dist/index.js');
const Redis = require('ioredis');

const E = process.env;
const RATE = Number(E.RATE ?? 5000), SECS = Number(E.SECS ?? 8), SESSIONS = Number(E.SESSIONS ?? 1000), ROUNDS = Number(E.ROUNDS ?? 2);
const TICK_MS = 2;

// Functions' globals are behind a metatable: bind what the loop uses to locals on the first call.
const FLOOR = `#!lua name=floor
local rcall, to_number, to_string, s_sub
-- Brings the published frame to ~180 bytes, the size the bare PUBLISH sends.
local PAD = '${'x'.repeat(130)}'
local function write(keys, args)
  if not rcall then rcall, to_number, to_string, s_sub = redis.call, tonumber, tostring, string.sub end
  local out = {}
  local a = 1
  for i = 0, #keys / 3 - 1 do
    local meta, state, log = keys[i * 3 + 1], keys[i * 3 + 2], keys[i * 3 + 3]
    local key, value = args[a], args[a + 1]
    a = a + 2
    local v = (to_number(rcall('HGET', meta, 'v')) or 0) + 1
    local vs = to_string(v)
    rcall('HSET', state, key, value)
    rcall('HSET', meta, 'v', vs)
    rcall('XADD', log, 'MAXLEN', '~', '1000', vs .. '-0', 'f', value)
    if v % 64 == 1 then
      rcall('PEXPIRE', meta, 604800000)
      rcall('PEXPIRE', state, 604800000)
      rcall('PEXPIRE', log, 604800000)
    end
    rcall('PUBLISH', s_sub(meta, 1, -5) .. 'ch', vs .. '|' .. value .. PAD)
    out[i + 1] = v
  end
  return out
end
redis.register_function('floor_write', write)
`;

// startRedis's watchdog stops the server however this process ends (a failed write rejects while
// others are in flight and ends it before `finally`; a signal; SIGKILL).
const server = await startRedis();
try {
  const sessions = Array.from({ length: SESSIONS }, () => randomUUID());
  const keys = new KeySpace('f:');
  // The floor script's sessions under their own prefix: its state records are not the store's.
  const floorKeys = new KeySpace('g:');
  const channels = sessions.map((s) => keys.session(s).channel);
  const floorChannels = sessions.map((s) => floorKeys.session(s).channel);
  // The two nodes: every frame reaches both, as in the reference fan-out.
  let received = 0;
  const subs = [new Redis(server.port), new Redis(server.port)];
  for (const sub of subs) {
    sub.on('messageBuffer', () => { received++; });
    for (const list of [channels, floorChannels]) for (let i = 0; i < list.length; i += 500) await sub.subscribe(...list.slice(i, i + 500));
  }
  const admin = new Redis(server.port);
  await admin.call('FUNCTION', 'LOAD', 'REPLACE', FLOOR);
  const log = createLogger('silent', 'bench');
  const client = createRedis({ mode: 'single', url: server.url }, log, 'command', 'bench');
  await whenReady(client, 5000);
  const store = new RedisStore(client, keys, { ttlSeconds: 604800, maxStateBytes: 1 << 20, logLength: 1000, logMaxBytes: 8 << 20, maxSessionsPerUser: 0, maxHandoffsPerSession: 20 });

  let q = 0;
  const value = () => `{"__lg":1,"t":${Date.now()},"q":${++q},"p":0}`;
  const frame = Buffer.alloc(180, 7);
  const senders = {
    publish: (n, first) => {
      const p = admin.pipeline();
      for (let i = 0; i < n; i++) p.publish(channels[(first + i) % SESSIONS], frame);
      return p.exec();
    },
    floor: (n, first) => {
      const ks = [], as = [];
      for (let i = 0; i < n; i++) {
        const s = sessions[(first + i) % SESSIONS];
        const k = floorKeys.session(s);
        ks.push(k.meta, k.state, k.log);
        as.push('k', value());
      }
      return admin.fcall('floor_write', ks.length, ...ks, ...as);
    },
    product: (n, first) => productWrites(n, first, true),
    // The same without correlation ids: what the dedupe records cost.
    product_no_dedupe: (n, first) => productWrites(n, first, false),
  };
  function productWrites(n, first, dedupe) {
    const all = [];
    for (let i = 0; i < n; i++) {
      const s = (first + i) % SESSIONS;
      all.push(store.mutate({
        sessionId: sessions[s], actor: { userId: `u${s}`, admin: false }, ownerId: `u${s}`,
        op: { op: 'set', key: 'k', value: JSON.parse(value()) }, deviceId: 'd0', originNode: 'probe/0123456789abcdef',
        originConn: 1, correlationId: dedupe ? `c${q}` : undefined,
      }).then((r) => { if (r.status !== 'ok' || r.duplicate) throw new Error(`write not applied: ${JSON.stringify(r)}`); }));
    }
    return Promise.all(all);
  }

  /** RATE writes/s for `secs`, one batch per tick; Redis CPU µs per write once every frame reached both subscribers. */
  const drive = async (name, secs) => {
    const total = Math.round(RATE * secs);
    const expect = received + 2 * total;
    const c0 = processCpuUs(server.pid);
    const t0 = Date.now();
    let sent = 0;
    const inFlight = [];
    while (sent < total) {
      const due = Math.min(total, Math.floor(((Date.now() - t0) / 1000) * RATE));
      if (due > sent) { inFlight.push(senders[name](due - sent, sent)); sent = due; }
      await sleep(TICK_MS);
    }
    await Promise.all(inFlight);
    for (let i = 0; received < expect && i < 500; i++) await sleep(10);
    if (received < expect) throw new Error(`${name}: ${expect - received} frames never arrived`);
    return (processCpuUs(server.pid) - c0) / total;
  };

  // Warm up: long enough for every session to exist (creation is dearer than a write), code hot.
  for (const name of Object.keys(senders)) await drive(name, Math.max(1, SESSIONS / RATE));
  const per = Object.fromEntries(Object.keys(senders).map((name) => [name, []]));
  for (let r = 0; r < ROUNDS; r++) for (const name of Object.keys(senders)) per[name].push(await drive(name, SECS));
  const out = { rate: RATE, secs: SECS, rounds: ROUNDS, redis_cpu_us_per_write: {}, vs_publish: {} };
  for (const name of Object.keys(per)) out.redis_cpu_us_per_write[name] = per[name].map((x) => Number(x.toFixed(1)));
  for (const name of Object.keys(per).filter((x) => x !== 'publish')) out.vs_publish[name] = Number((median(per[name]) / median(per.publish)).toFixed(2));
  console.log(JSON.stringify(out));
  for (const sub of subs) sub.disconnect();
  admin.disconnect(); client.disconnect(); await store.close();
} finally {
  await server.stop();
}
