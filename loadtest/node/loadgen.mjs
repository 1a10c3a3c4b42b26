#!/usr/bin/env node
// Standalone WebSocket load generator for a running gateway (or several): opens SESSIONS × DEVICES
// connections, AUTHs them, then sends STATE_UPDATE SETs open-loop at a fixed aggregate rate from
// one writer per session and measures writer → other-device latency and ACK latency.
// See loadtest/node/README.md. The machinery is scripts/bench/lib/ws.mjs (shared with npm run bench).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { checkWsUrl, createLoad, makePlan, mintAccessToken, runErrors } from '../../scripts/bench/lib/ws.mjs';

const USAGE = `usage: npm run loadtest -- --url ws://127.0.0.1:8080/ws [options]
  --url <ws-url>[,<ws-url>…]  gateway endpoint(s), repeatable; device d of session s uses url (s+d) mod n
  --sessions <n>              sessions (default 1000)
  --devices <n>               devices per session, >= 2: device 0 writes, the others read (default 2)
  --rate <n>                  aggregate STATE_UPDATEs per second, open loop (default 2000)
  --duration <s>              measured seconds (default 30)
  --warmup <s>                unmeasured seconds at the same rate first (default 2, 0 = none)
  --concurrency <n>           connect+AUTH handshakes in flight (default 200)
  --procs <n>                 forked client processes; 0 = all clients in this process (default 0)
  --drain <s>                 wait at most this long after the last send for ACKs/deliveries (default 5)
  --key <name>                state key the writers SET (default "loadgen")
  tokens (one of; a session's devices all use its owner's token):
  --token <jwt>               one access token for every session
  --tokens-file <path>        one token per line (# comments, blank lines ignored) or a JSON array;
                              session s uses token s mod count
  --secret <s>                mint HS256 tokens with the server's JWT_SECRET (default: $JWT_SECRET)
    --users <n>               distinct users to mint for (default min(sessions, 100))
    --role user|admin         (default user)
    --issuer <iss> --audience <aud>   if the server checks them
  --allow-remote              allow a non-loopback target (you must own it)
  --json                      also print one line "LOADGEN_JSON {...}"
  -h, --help`;

function die(msg, code = 2) {
  process.stderr.write(`loadgen: ${msg}\n${code === 2 ? USAGE + '\n' : ''}`);
  process.exit(code);
}

function parseArgs(argv) {
  const o = {
    urls: [], sessions: 1000, devices: 2, rate: 2000, duration: 30, warmup: 2, concurrency: 200, procs: 0, drain: 5,
    key: 'loadgen', token: null, tokensFile: null, secret: null, users: null, role: 'user', issuer: null, audience: null,
    allowRemote: false, json: false,
  };
  const num = (name, v, { min = 0, int = true } = {}) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) die(`${name} needs a ${int ? 'whole ' : ''}number >= ${min}, got "${v}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const val = () => {
      if (v !== undefined) return v;
      const n = argv[++i];
      if (n === undefined) die(`${a} needs a value`);
      return n;
    };
    switch (a) {
      case '--url': o.urls.push(...val().split(',').map((s) => s.trim()).filter(Boolean)); break;
      case '--sessions': o.sessions = num(a, val(), { min: 1 }); break;
      case '--devices': o.devices = num(a, val(), { min: 2 }); break;
      case '--rate': o.rate = num(a, val(), { min: 0.001, int: false }); break;
      case '--duration': o.duration = num(a, val(), { min: 0.001, int: false }); break;
      case '--warmup': o.warmup = num(a, val(), { min: 0, int: false }); break;
      case '--concurrency': o.concurrency = num(a, val(), { min: 1 }); break;
      case '--procs': o.procs = num(a, val(), { min: 0 }); break;
      case '--drain': o.drain = num(a, val(), { min: 0, int: false }); break;
      case '--key': o.key = val(); break;
      case '--token': o.token = val(); break;
      case '--tokens-file': o.tokensFile = val(); break;
      case '--secret': o.secret = val(); break;
      case '--users': o.users = num(a, val(), { min: 1 }); break;
      case '--role': o.role = val(); if (o.role !== 'user' && o.role !== 'admin') die('--role must be user or admin'); break;
      case '--issuer': o.issuer = val(); break;
      case '--audience': o.audience = val(); break;
      case '--allow-remote': o.allowRemote = true; break;
      case '--json': o.json = true; break;
      case '-h': case '--help': process.stdout.write(USAGE + '\n'); process.exit(0); break;
      default: die(`unknown argument "${argv[i]}"`);
    }
  }
  if (o.urls.length === 0) die('--url is required');
  if (o.key.length === 0 || o.key.length > 1024) die('--key must be 1-1024 characters');
  if ((o.warmup + o.duration) * o.rate > 30_000_000) die('more than 30 million updates in one run (latencies are kept in memory); shorten --duration or lower --rate');
  if (o.procs > os.cpus().length * 4) die(`--procs ${o.procs} is more than 4 per CPU; that only adds contention`);
  try {
    o.urls = o.urls.map((u) => checkWsUrl(u, { allowRemote: o.allowRemote }));
  } catch (err) {
    die(err.message);
  }
  return o;
}

function loadTokens(o) {
  const given = [o.token !== null, o.tokensFile !== null, o.secret !== null].filter(Boolean).length;
  if (given > 1) die('give only one of --token, --tokens-file, --secret');
  if (o.token !== null) return { tokens: [o.token], source: 'one token' };
  if (o.tokensFile !== null) {
    let text;
    try {
      text = readFileSync(o.tokensFile, 'utf8');
    } catch (err) {
      die(`cannot read ${o.tokensFile}: ${err.message}`);
    }
    let tokens;
    const t = text.trim();
    if (t.startsWith('[')) {
      try {
        tokens = JSON.parse(t);
      } catch {
        die(`${o.tokensFile} is not a JSON array`);
      }
    } else tokens = t.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
    if (!Array.isArray(tokens) || tokens.length === 0 || tokens.some((x) => typeof x !== 'string' || !x)) die(`${o.tokensFile} holds no tokens`);
    return { tokens, source: `${tokens.length} tokens from ${o.tokensFile}` };
  }
  const secret = o.secret ?? process.env.JWT_SECRET;
  if (!secret) die('no tokens: pass --token, --tokens-file or --secret (or set JWT_SECRET)');
  const users = o.users ?? Math.min(o.sessions, 100);
  const ttlSeconds = Math.ceil(o.warmup + o.duration + o.drain) + 600;
  const tokens = Array.from({ length: users }, (_, u) =>
    mintAccessToken(secret, `loadgen-user-${u}`, { role: o.role, ttlSeconds, issuer: o.issuer ?? undefined, audience: o.audience ?? undefined }));
  return { tokens, source: `minted for ${users} users (HS256, ${ttlSeconds} s)` };
}

const f = (v, d = 2) => (v === null || v === undefined ? 'n/a' : v.toFixed(d));
const line = (s) => process.stdout.write(s + '\n');
const info = (s) => process.stderr.write(`loadgen: ${s}\n`);

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const { tokens, source } = loadTokens(o);
  const plan = makePlan({
    sessions: o.sessions, devices: o.devices, prefix: `lg-${process.pid}`,
    tokenOf: (s) => tokens[s % tokens.length], urlOf: (s, d) => o.urls[(s + d) % o.urls.length], sessionIdOf: () => randomUUID(),
  });
  const load = await createLoad(plan, { procs: o.procs });

  let interrupted = false;
  const onSignal = (sig) => {
    if (interrupted) {
      info(`${sig} again: exiting now`);
      load.kill();
      process.exit(130);
    }
    interrupted = true;
    info(`${sig}: stopping (again to force)`);
    load.abort();
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const devices = o.sessions * o.devices;
  line(`loadgen: ${o.sessions} sessions × ${o.devices} devices = ${devices} connections on ${o.urls.join(', ')}; ` +
    `${load.processes} client process(es)${load.forked ? ' (forked)' : ''}; tokens: ${source}`);
  if (o.rate / o.sessions > 90) info(`warning: ${f(o.rate / o.sessions, 1)} updates/s per writer; the server rate-limits each connection (WS_RATE_PER_SECOND, default 100)`);

  let exit = 0;
  const summary = { sessions: o.sessions, devices_per_session: o.devices, urls: o.urls, client_processes: load.processes };
  try {
    const connectBudgetMs = Math.max(30_000, devices * 20);
    const c = await load.connect({ concurrency: o.concurrency, timeoutMs: 20_000, deadline: Date.now() + connectBudgetMs });
    const auth = c.auth.summary();
    const rate = c.ok > 0 ? (c.ok / c.wallMs) * 1000 : 0;
    line(`connect: ${c.ok}/${devices} authenticated in ${f(c.wallMs / 1000)} s (${f(rate, 0)}/s, ${o.concurrency} in flight), ` +
      `connect→AUTH_SUCCESS p50 ${f(auth.p50)} p99 ${f(auth.p99)} max ${f(auth.max)} ms; failed ${c.failed}, not attempted ${c.notRun}`);
    for (const e of c.errorSamples) info(`connect error: ${e}`);
    summary.connect = { ok: c.ok, failed: c.failed, not_attempted: c.notRun, rate_per_s: rate, auth_p50_ms: auth.p50, auth_p99_ms: auth.p99 };
    if (c.ok === 0) throw new Error('no connection could AUTH');
    if (c.failed + c.notRun > 0) exit = 1;

    if (o.warmup > 0 && !interrupted) {
      const w = await load.run({ step: 1, rate: o.rate, durationMs: o.warmup * 1000, drainMs: o.drain * 1000, key: o.key });
      line(`warm-up: ${w.sent} updates in ${f(w.sendWallMs / 1000)} s, lost ${w.lost}, p99 ${f(w.lat.summary().p99)} ms (not counted)`);
    }
    if (!interrupted) {
      info(`running ${o.rate}/s for ${o.duration} s…`);
      const r = await load.run({ step: 2, rate: o.rate, durationMs: o.duration * 1000, drainMs: o.drain * 1000, key: o.key });
      const lat = r.lat.summary();
      const ack = r.ack.summary();
      const lag = r.lag.summary();
      const errors = runErrors(r) - (interrupted ? r.notSent : 0); // an interrupted run stops sending on purpose
      line(`run: target ${o.rate}/s for ${o.duration} s${interrupted ? ' (interrupted)' : ''}: sent ${r.sent} (${f(r.achievedRate, 1)}/s achieved), ` +
        `acked ${r.acked}, delivered ${r.received}/${r.expected}, lost ${r.lost}`);
      line(`latency writer→other device (ms): p50 ${f(lat.p50, 3)}  p90 ${f(lat.p90, 3)}  p99 ${f(lat.p99, 3)}  max ${f(lat.max, 3)}  mean ${f(lat.mean, 3)}  (n=${lat.n})`);
      line(`ACK latency (ms):                  p50 ${f(ack.p50, 3)}  p90 ${f(ack.p90, 3)}  p99 ${f(ack.p99, 3)}  max ${f(ack.max, 3)}`);
      line(`send lag behind schedule (ms):     p50 ${f(lag.p50, 3)}  p99 ${f(lag.p99, 3)}  max ${f(lag.max, 3)}  (large = this generator is the bottleneck)`);
      line(`generator event-loop delay (ms):   p99 ${f(r.loopDelayP99Ms, 3)}  max ${f(r.loopDelayMaxMs, 3)}  (its stalls are part of the measured latency)`);
      line(`errors: ${errors} (lost ${r.lost}, unacked ${r.unacked}, not sent ${r.notSent}, ERROR frames ${r.errorFrames}, ` +
        `unexpected closes ${r.unexpectedCloses}, out-of-order ${r.orderErrors})` +
        `${r.reconnects ? `; RECONNECT frames ${r.reconnects}` : ''}${r.resyncs ? `; snapshot resyncs ${r.resyncs}` : ''}`);
      for (const e of r.errorSamples) info(`error: ${e}`);
      summary.run = {
        rate_target: o.rate, rate_achieved: r.achievedRate, duration_s: o.duration, interrupted, sent: r.sent, acked: r.acked,
        expected: r.expected, received: r.received, lost: r.lost, errors,
        latency_ms: lat, ack_ms: ack, send_lag_ms: { p50: lag.p50, p99: lag.p99, max: lag.max }, loop_delay_ms: { p99: r.loopDelayP99Ms, max: r.loopDelayMaxMs },
        error_frames: r.errorFrames, unexpected_closes: r.unexpectedCloses, out_of_order: r.orderErrors,
      };
      if (errors > 0) exit = 1;
    }
  } catch (err) {
    info(`failed: ${err?.message ?? err}`);
    exit = 1;
  } finally {
    await load.close();
  }
  if (o.json) line(`LOADGEN_JSON ${JSON.stringify(summary)}`);
  process.exit(interrupted ? 130 : exit);
}

await main();
