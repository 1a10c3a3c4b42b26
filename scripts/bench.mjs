#!/usr/bin/env node
// Benchmark runner: `npm run bench [-- --only <substring>] [-- --quick]`.
//
// Scenarios are the `scripts/bench/*.mjs` files (helpers live in `scripts/bench/lib/`). Each exports
// `name` and `run(ctx)` (named exports, or a default export object with both) and resolves with rows
// `{ scenario, metric, value, unit }`. A scenario may also export `description` and `timeoutMs`.
//
// The runner gives each scenario a context (see `makeContext`) that starts private Redis servers and
// gateway processes on loopback and stops them when the scenario ends, on errors, on timeouts and
// on Ctrl-C. It prints an aligned table on stdout, then one line `BENCH_JSON {...}`. Progress goes
// to stderr. Exit code: 0 clean, 1 when a scenario failed or any `*.errors` row is above 0,
// 2 for bad usage, 130 when interrupted.
import { createRequire } from 'node:module';
import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH_DIR = path.join(ROOT, 'scripts', 'bench');
const TESTKIT = path.join(ROOT, 'packages', 'testkit', 'dist', 'index.js');
const GATEWAY_MAIN = path.join(ROOT, 'packages', 'gateway', 'dist', 'main.js');
const STORES = Object.freeze(['redis', 'embedded']);
// Variables that would make a gateway pick another store than the one asked for.
const REDIS_ENV_UNSET = { REDIS_URL: undefined, REDIS_ADDR: undefined, REDIS_PASSWORD: undefined, REDIS_DB: undefined, REDIS_CLUSTER_NODES: undefined };

const log = (msg) => process.stderr.write(`[bench] ${msg}\n`);

/** Resolves true when `p` settles within `ms`, false otherwise; never leaves a timer behind. */
function settlesWithin(p, ms) {
  let timer;
  return Promise.race([
    Promise.resolve(p).then(() => true, () => true),
    new Promise((r) => (timer = setTimeout(() => r(false), ms))),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// command line

function usage() {
  return [
    'usage: npm run bench [-- [--only <substring>] [--quick] [--list]]',
    '  --only <s>   run only scenarios whose name contains <s> (repeatable)',
    '  --quick      smaller counts, for a smoke run',
    '  --list       list the scenarios and exit',
  ].join('\n');
}

function parseArgs(argv) {
  const opts = { only: [], quick: false, list: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') opts.quick = true;
    else if (a === '--list') opts.list = true;
    else if (a === '--only' || a.startsWith('--only=')) {
      const v = a === '--only' ? argv[++i] : a.slice('--only='.length);
      if (!v) throw new Error('--only needs a scenario name substring');
      opts.only.push(v);
    } else if (a === '--help' || a === '-h') {
      process.stdout.write(usage() + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument "${a}"`);
  }
  return opts;
}

// ---------------------------------------------------------------------------------------------
// scenarios

async function loadScenarios() {
  const files = readdirSync(BENCH_DIR, { withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith('.mjs') && !d.name.startsWith('_'))
    .map((d) => d.name)
    .sort();
  const scenarios = [];
  for (const file of files) {
    const mod = await import(pathToFileURL(path.join(BENCH_DIR, file)).href);
    const sc = mod.default && typeof mod.default.run === 'function' ? mod.default : mod;
    if (typeof sc.name !== 'string' || typeof sc.run !== 'function') {
      throw new Error(`scripts/bench/${file} must export { name, run(ctx) }`);
    }
    if (scenarios.some((s) => s.name === sc.name)) throw new Error(`duplicate scenario name "${sc.name}" (${file})`);
    scenarios.push({ file, name: sc.name, description: sc.description ?? '', timeoutMs: sc.timeoutMs, run: sc.run });
  }
  return scenarios;
}

// ---------------------------------------------------------------------------------------------
// processes: every Redis and gateway started through a context is registered here until stopped

/** Live resources: { label, stop(): Promise<void>, kill(): void (synchronous, last resort) }. */
const live = new Set();
/** Start-ups in progress, awaited on shutdown so nothing that is still starting escapes. */
const pending = new Set();

async function stopResource(r) {
  if (!live.has(r)) return;
  live.delete(r);
  try {
    await r.stop();
  } catch (err) {
    log(`stopping ${r.label} failed (${err?.message ?? err}); killing it`);
    r.kill();
  }
}

async function stopAll(resources) {
  // Reverse start order: gateways before the Redis they use.
  for (const r of [...resources].reverse()) await stopResource(r);
}

// Last line of defence on any exit path (testkit does the same for its redis-servers).
process.on('exit', () => {
  for (const r of live) r.kill();
});

function track(promise) {
  pending.add(promise);
  const drop = () => pending.delete(promise);
  promise.then(drop, drop);
  return promise;
}

// ---------------------------------------------------------------------------------------------
// context

let testkit;
let tokenService;
const tokenCache = new Map();
let shuttingDown = false;
let currentAbort = null;

function makeContext(sc, opts) {
  const owned = [];
  const abort = new AbortController();
  const timeoutMs = sc.timeoutMs ?? (opts.quick ? 90_000 : 170_000);
  const deadline = Date.now() + timeoutMs;

  const register = (r) => {
    live.add(r);
    owned.push(r);
    if (shuttingDown || abort.signal.aborted) {
      // Started while we were stopping: do not let it outlive us.
      void stopResource(r);
      throw new Error('aborted');
    }
    return r;
  };

  const ctx = {
    /** The scenario's name. */
    name: sc.name,
    /** True for `--quick`: use smaller counts. */
    quick: opts.quick,
    /** Aborted on Ctrl-C, on the scenario timeout, and when the run is stopping: end loops then. */
    signal: abort.signal,
    /** Date.now() value by which run() must have finished. */
    deadline,
    /** The store kinds a scenario can ask `startStore` for. */
    stores: STORES,
    /** Progress line on stderr. */
    log: (msg) => log(`${sc.name}: ${msg}`),

    /** A private redis-server on a free loopback port; stopped with the scenario (or call stop()). */
    async startRedis(extraArgs = []) {
      if (!testkit.redisServerAvailable()) throw new Error('redis-server is not on PATH');
      const redis = await track(testkit.startRedis(extraArgs));
      const { stop, kill } = redis; // the handle's own stop() is replaced below
      const r = register({
        label: `redis-server :${redis.port}`,
        stop: () => stop(),
        kill: () => void kill().catch(() => {}),
      });
      return Object.assign(redis, { stop: () => stopResource(r) });
    },

    /**
     * A gateway process (`packages/gateway/dist/main.js`, test JWT secrets, loopback, free port) via
     * testkit's spawnNode: { url, wsUrl, port, proc, output(), exited, kill(signal), stop() }.
     * Stopped with the scenario (SIGTERM, then SIGKILL after 8 s), or earlier by `stop()`.
     */
    async startGateway(env = {}) {
      const gw = await track(testkit.spawnNode({ LOG_LEVEL: 'warn', ...env }));
      let stopping = false;
      gw.exited.then((code) => {
        if (!stopping && !shuttingDown) {
          const tail = gw.output().split('\n').slice(-15).join('\n');
          log(`${sc.name}: gateway ${gw.url} exited unexpectedly (code ${code}); last output:\n${tail}`);
        }
      });
      const alive = () => gw.proc.exitCode === null && gw.proc.signalCode === null;
      const r = register({
        label: `gateway ${gw.url} (pid ${gw.proc.pid})`,
        stop: async () => {
          stopping = true;
          if (!alive()) return;
          gw.kill('SIGTERM');
          if (await settlesWithin(gw.exited, 8_000)) return;
          log(`gateway ${gw.url} ignored SIGTERM; SIGKILL`);
          gw.kill('SIGKILL');
          await settlesWithin(gw.exited, 2_000);
        },
        kill: () => {
          stopping = true;
          if (alive()) gw.proc.kill('SIGKILL');
        },
      });
      return Object.assign(gw, { stop: () => stopResource(r) });
    },

    /**
     * A gateway on the given store: 'redis' (a fresh private Redis + a gateway with REDIS_URL) or
     * 'embedded' (a gateway without Redis). Checks /health reports that store.
     * Returns { kind, url, wsUrl, gateway, redis|null, stop() }.
     */
    async startStore(kind, env = {}) {
      if (!STORES.includes(kind)) throw new Error(`unknown store "${kind}" (${STORES.join(', ')})`);
      const redis = kind === 'redis' ? await ctx.startRedis() : null;
      const gateway = await ctx.startGateway({ ...REDIS_ENV_UNSET, ...(redis ? { REDIS_URL: redis.url } : {}), ...env });
      const health = await (await fetch(`${gateway.url}/health`)).json();
      const want = kind === 'redis' ? 'redis' : 'memory';
      if (health.store !== want) throw new Error(`gateway for store "${kind}" reports store "${health.store}"`);
      return {
        kind, url: gateway.url, wsUrl: gateway.wsUrl, gateway, redis,
        stop: async () => {
          await gateway.stop();
          await redis?.stop();
        },
      };
    },

    /** A signed access token (test secrets, 1 h), cached per user and role. */
    async token(userId, role = 'user') {
      const key = `${role}\u0000${userId}`;
      let t = tokenCache.get(key);
      if (!t) {
        tokenService ??= testkit.testTokens();
        t = await tokenService.signAccess(userId, role, 3600);
        tokenCache.set(key, t);
      }
      return t;
    },

    /** Runs `fn` when the scenario's resources are stopped. */
    onCleanup(fn, label = 'cleanup') {
      register({ label, stop: async () => fn(), kill: () => {} });
    },

    /** `{ scenario, metric, value, unit }` for this scenario. */
    row: (metric, value, unit) => ({ scenario: sc.name, metric, value, unit }),
  };
  return { ctx, owned, abort, timeoutMs };
}

// ---------------------------------------------------------------------------------------------
// output

const isErrorMetric = (m) => /(^|[._\s])errors?$/.test(m);

function formatValue(value, unit) {
  if (value === null || value === undefined || Number.isNaN(value)) return 'n/a';
  if (unit === 'ms' || unit === 's') return value >= 1000 ? value.toFixed(0) : value >= 100 ? value.toFixed(1) : value.toFixed(3);
  if (Number.isInteger(value)) return String(value);
  if (Math.abs(value) >= 1000) return value.toFixed(0);
  return value.toFixed(2);
}

function printTable(rows) {
  const head = ['scenario', 'metric', 'value', 'unit', ''];
  const body = rows.map((r) => [
    r.scenario,
    r.metric,
    formatValue(r.value, r.unit),
    r.unit,
    isErrorMetric(r.metric) && r.value > 0 ? '<-- ERRORS' : '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) =>
    cells
      .map((c, i) => (i === 2 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const out = [line(head), line(widths.map((w) => '-'.repeat(w)))];
  let prev = null;
  for (const b of body) {
    if (prev !== null && b[0] !== prev) out.push('');
    prev = b[0];
    out.push(line(b));
  }
  process.stdout.write(out.join('\n') + '\n');
}

function report(state, extra = {}) {
  const errorsTotal = state.rows.filter((r) => isErrorMetric(r.metric) && r.value > 0).reduce((a, r) => a + r.value, 0);
  const ok = errorsTotal === 0 && state.failures.length === 0 && !extra.interrupted;
  process.stdout.write('\n');
  if (state.rows.length > 0) printTable(state.rows);
  else process.stdout.write('(no results)\n');
  process.stdout.write('\n');
  for (const f of state.failures) process.stdout.write(`FAILED ${f.scenario}: ${f.error}\n`);
  process.stdout.write(
    `${ok ? 'OK' : 'NOT OK'}: ${state.rows.length} results, ${errorsTotal} errors, ${state.failures.length} failed scenarios` +
      `${extra.interrupted ? ', interrupted' : ''} (${((Date.now() - state.t0) / 1000).toFixed(1)} s)\n`,
  );
  const json = {
    timestamp: new Date(state.startedAt).toISOString(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model?.trim() ?? null,
    total_mem_mb: Math.round(os.totalmem() / 2 ** 20),
    quick: state.opts.quick,
    only: state.opts.only.length > 0 ? state.opts.only : null,
    scenarios: state.ran,
    duration_s: Math.round((Date.now() - state.t0) / 100) / 10,
    ok,
    interrupted: Boolean(extra.interrupted),
    errors_total: errorsTotal,
    failures: state.failures,
    results: state.rows,
  };
  process.stdout.write(`BENCH_JSON ${JSON.stringify(json)}\n`);
  return ok;
}

// ---------------------------------------------------------------------------------------------
// main

async function shutdown() {
  shuttingDown = true;
  currentAbort?.abort(new Error('stopping'));
  // Anything still starting registers itself when its start-up resolves, and is stopped then.
  if (pending.size > 0) await settlesWithin(Promise.allSettled([...pending]), 20_000);
  await stopAll([...live]);
}

async function main() {
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${err.message}\n${usage()}\n`);
    process.exit(2);
  }
  const all = await loadScenarios();
  if (opts.list) {
    for (const s of all) process.stdout.write(`${s.name}${s.description ? `  — ${s.description}` : ''}\n`);
    return;
  }
  const selected = opts.only.length ? all.filter((s) => opts.only.some((o) => s.name.includes(o))) : all;
  if (selected.length === 0) {
    process.stderr.write(`no scenario matches ${opts.only.join(', ')} (have: ${all.map((s) => s.name).join(', ')})\n`);
    process.exit(2);
  }
  for (const f of [TESTKIT, GATEWAY_MAIN]) {
    if (!existsSync(f)) {
      process.stderr.write(`${path.relative(ROOT, f)} is missing: run \`npm run build\` first (npm run bench does)\n`);
      process.exit(2);
    }
  }
  testkit = createRequire(import.meta.url)(TESTKIT);

  const state = { opts, rows: [], failures: [], ran: [], t0: Date.now(), startedAt: Date.now() };

  let signalled = false;
  const onSignal = async (sig) => {
    if (signalled) {
      log(`${sig} again: killing everything now`);
      for (const r of live) r.kill();
      process.exit(130);
    }
    signalled = true;
    log(`${sig}: stopping (again to force)`);
    await shutdown();
    report(state, { interrupted: true });
    process.exit(130);
  };
  process.on('SIGINT', () => void onSignal('SIGINT'));
  process.on('SIGTERM', () => void onSignal('SIGTERM'));
  process.on('SIGHUP', () => void onSignal('SIGHUP'));
  const onFatal = async (err) => {
    log(`fatal: ${err?.stack ?? err}`);
    await shutdown();
    report(state);
    process.exit(1);
  };
  process.on('uncaughtException', (err) => void onFatal(err));
  process.on('unhandledRejection', (err) => void onFatal(err));

  log(`node ${process.version}, ${os.cpus().length} cpus${opts.quick ? ', quick' : ''}; scenarios: ${selected.map((s) => s.name).join(', ')}`);
  for (const sc of selected) {
    if (shuttingDown) break;
    const { ctx, owned, abort, timeoutMs } = makeContext(sc, opts);
    currentAbort = abort;
    state.ran.push(sc.name);
    const started = Date.now();
    log(`${sc.name}: start${sc.description ? ` (${sc.description})` : ''}`);
    let timer;
    try {
      const running = Promise.resolve().then(() => sc.run(ctx));
      running.catch(() => {}); // may reject after a timeout, once its processes are gone
      const timedOut = new Promise((_, reject) => {
        timer = setTimeout(() => {
          abort.abort(new Error('timeout'));
          reject(new Error(`timed out after ${timeoutMs / 1000} s`));
        }, timeoutMs);
      });
      const rows = await Promise.race([running, timedOut]);
      if (shuttingDown) break; // interrupted: whatever it measured after that is not a result
      if (!Array.isArray(rows)) throw new Error('run(ctx) must resolve with an array of rows');
      for (const r of rows) {
        if (!r || typeof r.metric !== 'string' || typeof r.unit !== 'string') throw new Error(`bad row ${JSON.stringify(r)}`);
        const value = typeof r.value === 'number' && Number.isFinite(r.value) ? r.value : null;
        state.rows.push({ scenario: r.scenario ?? sc.name, metric: r.metric, value, unit: r.unit });
      }
    } catch (err) {
      if (shuttingDown) break;
      log(`${sc.name}: FAILED: ${err?.stack ?? err}`);
      state.failures.push({ scenario: sc.name, error: String(err?.message ?? err) });
    } finally {
      clearTimeout(timer);
      if (!abort.signal.aborted) abort.abort(new Error('scenario finished'));
      if (!shuttingDown) await stopAll(owned);
    }
    log(`${sc.name}: done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }
  if (shuttingDown) return; // the signal handler reports and exits
  await shutdown();
  const ok = report(state);
  process.exitCode = ok ? 0 : 1;
  // Everything is stopped; should a forgotten handle keep the loop alive, do not hang on it.
  setTimeout(() => {
    log('a handle kept the process alive after the report; exiting');
    process.exit(process.exitCode);
  }, 3_000).unref();
}

await main();
