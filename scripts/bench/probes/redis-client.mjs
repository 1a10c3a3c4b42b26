#!/usr/bin/env node
// What the Redis client library costs the gateway per update, apart from the system calls: client
// CPU per write call and per pub/sub message, through ioredis as the store and the bus use it,
// against a bare socket with a minimal RESP reader (what the reference bench's `uws` peer does).
// Each measurement runs in its own child process (CPU read with process.cpuUsage) against a private
// redis-server, both clients alternately, twice.
//   node scripts/bench/probes/redis-client.mjs [calls=100000] [messages=200000]
// - write call: FCALL of a function that returns one 150-byte string (a write's msgpack reply), with
//   the arguments of a single-key SET, 4 in flight; through ioredis: EncodedCommand + sendCommand on
//   a client wrapped like the command connection (timeouts, coalesced writes).
// - pub/sub message: 220-byte messages published in pipelines of 500 from another connection;
//   through ioredis: a subscriber connection's 'messageBuffer' event, as the bus receives frames.
import { fork } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
const require = createRequire(import.meta.url);
const Redis = require('ioredis');

const child = process.argv[2] === '--child';
// (children get the counts through the environment: their arguments name the test)
const CALLS = Number((child ? process.env.PROBE_CALLS : process.argv[2]) ?? 100_000);
const MESSAGES = Number((child ? process.env.PROBE_MESSAGES : process.argv[3]) ?? 200_000);
process.env.PROBE_CALLS = String(CALLS);
process.env.PROBE_MESSAGES = String(MESSAGES);
const me = fileURLToPath(import.meta.url);

/** A minimal RESP reader for the replies these two tests get: arrays of bulk strings. */
function replies(onArray) {
  let rest = null;
  return (chunk) => {
    const b = rest ? Buffer.concat([rest, chunk]) : chunk;
    let i = 0;
    outer: while (i < b.length) {
      const start = i;
      let e = b.indexOf(10, i);
      if (e < 0) break;
      let count = 0;
      for (let j = i + 1; j < e - 1; j++) count = count * 10 + b[j] - 48;
      i = e + 1;
      const items = [];
      for (let k = 0; k < count; k++) {
        e = b.indexOf(10, i);
        if (e < 0) { i = start; break outer; }
        if (b[i] !== 36) { items.push(null); i = e + 1; continue; } // ':' integers (subscription counts)
        let n = 0;
        for (let j = i + 1; j < e - 1; j++) n = n * 10 + b[j] - 48;
        if (e + 1 + n + 2 > b.length) { i = start; break outer; }
        items.push(b.subarray(e + 1, e + 1 + n));
        i = e + 1 + n + 2;
      }
      onArray(items);
    }
    rest = i < b.length ? Buffer.from(b.subarray(i)) : null;
  };
}

async function childCalls(port, kind) {
  const args = [3, 'hf:{s1}:meta', 'hf:{s1}:state', 'hf:{s1}:log', 7, 'set 0 - - - 12 5 1733150000000 9f3a', 'alice', 'alice',
    'dev-1', '', 'n-abc123', 'c-1234', 'progress', '{"minute":12,"mood":"calm"}', '28'];
  const gw = require('../../../packages/gateway/dist/store/encodedCommand.js');
  let one, close;
  if (kind === 'ioredis') {
    const { timeoutAfterPoll } = require('../../../packages/gateway/dist/store/timeoutAfterPoll.js');
    const { coalesceWrites, uncorked } = require('../../../packages/gateway/dist/store/coalesceWrites.js');
    const r = new Redis(port, { enableOfflineQueue: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 });
    timeoutAfterPoll(r, 3000);
    coalesceWrites(r);
    await new Promise((res) => r.once('ready', res));
    one = () => { const c = new gw.EncodedCommand('FCALL', 'probe', args); uncorked(r, () => r.sendCommand(c)); return c.promise; };
    close = () => r.disconnect();
  } else {
    const s = net.createConnection(port);
    s.setNoDelay(true);
    await new Promise((res) => s.once('connect', res));
    const waiting = [];
    s.on('data', replies((items) => waiting.shift()(items)));
    one = () => new Promise((res) => { waiting.push(res); s.write(gw.encodeCommand('FCALL', 'probe', args)); });
    close = () => s.destroy();
  }
  const run = async (n) => { let left = n; await Promise.all(Array.from({ length: 4 }, async () => { while (left-- > 0) await one(); })); };
  await run(Math.min(20_000, CALLS));
  const t = process.cpuUsage();
  await run(CALLS);
  const u = process.cpuUsage(t);
  close();
  return (u.user + u.system) / CALLS;
}

async function childMessages(port, kind) {
  let n = 0, t0;
  const done = new Promise((resolve) => {
    const got = () => {
      if (n === 0) t0 = process.cpuUsage();
      if (++n === MESSAGES) { const u = process.cpuUsage(t0); resolve((u.user + u.system) / MESSAGES); }
    };
    if (kind === 'ioredis') {
      const s = new Redis(port);
      s.on('messageBuffer', got);
      s.subscribe('probe').then(() => process.send('subscribed'));
    } else {
      const s = net.createConnection(port);
      s.on('data', replies((items) => {
        const kind0 = items[0]?.[0];
        if (kind0 === 0x6d) got(items[2]); // "message"
        else if (kind0 === 0x73) process.send('subscribed'); // "subscribe"
      }));
      s.write('*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nprobe\r\n');
    }
  });
  const us = await done;
  return us;
}

if (child) {
  const [, , , test, port, kind] = process.argv;
  const us = test === 'calls' ? await childCalls(Number(port), kind) : await childMessages(Number(port), kind);
  process.send({ us });
  process.exit(0);
}

const { startRedis } = require('../../../packages/testkit/dist/index.js');
const server = await startRedis();
const port = server.port;
const results = { calls: { ioredis: [], bare: [] }, messages: { ioredis: [], bare: [] } };
try {
  const admin = new Redis(port);
  await admin.call('FUNCTION', 'LOAD', 'REPLACE', "#!lua name=probe\nredis.register_function('probe', function(k, a) return {string.rep('x', 150)} end)");
  const payload = Buffer.alloc(220, 97);
  for (let round = 0; round < 2; round++) {
    for (const kind of ['ioredis', 'bare']) {
      const c = fork(me, ['--child', 'calls', String(port), kind]);
      results.calls[kind].push((await new Promise((r) => c.on('message', r))).us);
      const m = fork(me, ['--child', 'messages', String(port), kind]);
      const reported = new Promise((r) => m.on('message', (x) => { if (typeof x === 'object') r(x.us); }));
      await new Promise((r) => m.once('message', r)); // subscribed
      for (let i = 0; i < MESSAGES; i += 500) {
        const p = admin.pipeline();
        for (let j = 0; j < 500 && i + j < MESSAGES; j++) p.publish('probe', payload);
        await p.exec();
      }
      results.messages[kind].push(await reported);
    }
  }
  admin.disconnect();
} finally {
  await server.stop();
}
const fmt = (xs) => xs.map((x) => Number(x.toFixed(2)));
console.log(JSON.stringify({
  client_cpu_us_per_write_call: { ioredis: fmt(results.calls.ioredis), bare_socket: fmt(results.calls.bare) },
  client_cpu_us_per_pubsub_message: { ioredis: fmt(results.messages.ioredis), bare_socket: fmt(results.messages.bare) },
}));
