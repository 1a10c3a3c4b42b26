#!/usr/bin/env node
// Where a gateway's CPU goes, this build beside the reference bench's `uws` in one run: the
// reference fan-out at RATE updates/s, and `perf record` of one gateway of each peer for SECS
// seconds once its load is steady; then each peer's samples by kind: the kernel (system calls,
// loopback TCP, scheduling), JavaScript compiled by V8 (JIT), V8's runtime and builtins (property
// lookups, strings, promises, calls into C++, GC), libc, uWS's native code. Also user and system
// CPU of both gateways of each peer (/proc) over the same window.
//   node scripts/bench/probes/cpu-split.mjs <reference-bench copy>      (run its `npm ci` first)
//   env: RATE=5000 SECS=8 PRODUCT_FLAGS (node flags; default the service's own)
// Needs linux-perf (`perf`), run as root (or with perf_event_paranoid <= 0).
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { processCpuTimesUs } from '../lib/proc.mjs';
const require = createRequire(import.meta.url);
const { gatewayNodeFlags, sleep } = require('../../../packages/testkit/dist/index.js');

const here = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const bench = process.argv[2] && path.resolve(process.argv[2]);
if (!bench || !existsSync(path.join(bench, 'run.sh'))) {
  console.error('usage: cpu-split.mjs <copy of ../shared/reference-bench, after npm ci>');
  process.exit(2);
}
const RATE = Number(process.env.RATE ?? 5000), SECS = Number(process.env.SECS ?? 8);
const flags = process.env.PRODUCT_FLAGS ?? gatewayNodeFlags(path.join(here, 'packages/gateway/dist/main.js')).join(' ');
const work = mkdtempSync(path.join(tmpdir(), 'hf-split-'));

/** Samples by kind, from `perf report --sort dso,sym` lines. V8's builtins live in the node binary. */
const KINDS = [
  ['kernel', (dso) => dso.startsWith('[kernel')],
  ['JIT (JavaScript)', (dso) => dso.startsWith('[JIT]')],
  ['V8 GC', (dso, sym) => dso === 'node' && /Scaveng|Heap::|MarkCompact|Sweeper|Evacuat|RememberedSet|Marking|SemiSpace|NewSpace/.test(sym)],
  ['V8 property lookups (ICs)', (dso, sym) => dso === 'node' && /IC\b|IC_|ICTrampoline|TransitionArray|LookupIterator|FeedbackNexus/.test(sym)],
  ['V8 strings', (dso, sym) => dso === 'node' && /String|Utf8|Latin1|NumberToString|Intern/.test(sym)],
  ['V8 promises, calls, C++ entry', (dso, sym) => dso === 'node' && /Promise|Microtask|Await|Generator|CallFunction|Call_Receiver|JSEntry|Invoke|Construct|FunctionCallback|MakeCallback|HandleScope|Context::/.test(sym)],
  ['node/V8 other (libuv, JSON, allocation, ...)', (dso) => dso === 'node' || dso.startsWith('node.')],
  ['libc (syscall wrappers, malloc)', (dso) => dso.startsWith('libc')],
  ['uWS native', (dso) => dso.startsWith('uws_')],
  ['other', () => true],
];

function split(data) {
  const out = execFileSync('perf', ['report', '-i', data, '--no-children', '--sort', 'dso,sym', '--stdio', '-g', 'none'], { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
  const by = new Map(KINDS.map(([k]) => [k, 0]));
  for (const line of out.split('\n')) {
    const m = /^\s*([\d.]+)%\s+(\[JIT\] tid \d+|\S+)\s+\[.\]\s+(.*)$/.exec(line);
    if (!m) continue;
    const kind = KINDS.find(([, test]) => test(m[2], m[3]))[0];
    by.set(kind, by.get(kind) + Number(m[1]));
  }
  return by;
}

/** Node processes whose command line holds `pattern` (not the shells that started them). */
const pidsOf = (pattern) => spawnSync('pgrep', ['-f', pattern], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number)
  .filter((pid) => { try { return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'node'; } catch { return false; } });

const peers = [['product', 'gateway/dist/main.js'], ['uws', 'uws-peer/server.mjs']];
const results = new Map();
const run = spawn(path.join(bench, 'run.sh'), ['product', 'uws'], {
  cwd: bench,
  env: { ...process.env, PRODUCT_CMD: `node ${flags} packages/gateway/dist/main.js`, PRODUCT_CWD: here, SCENARIOS: 'fanout', RATES: String(RATE), REPEAT: '1', RUN_ID: `cpu-split-${process.pid}` },
  stdio: ['ignore', 'pipe', 'inherit'],
});
let ratios = '';
run.stdout.on('data', (b) => { for (const l of String(b).split('\n')) if (l.includes('ratios_vs')) ratios = l; });
const finished = new Promise((r) => run.on('exit', r));
for (const [name, pattern] of peers) {
  let pids = [];
  while (pids.length < 2) {
    if (run.exitCode !== null) throw new Error(`the bench ended before ${name} ran`);
    await sleep(300);
    pids = pidsOf(pattern);
  }
  await sleep(11_000); // connections open, warm-up done
  const before = pids.map(processCpuTimesUs);
  const data = path.join(work, `${name}.data`);
  spawnSync('perf', ['record', '-F', '2000', '-o', data, '-p', String(pids[0]), '--', 'sleep', String(SECS)], { stdio: 'ignore' });
  const after = pids.map(processCpuTimesUs);
  // (ms of CPU, both gateways)
  const user = after.reduce((s, t, i) => s + t.user - before[i].user, 0) / 1000, sys = after.reduce((s, t, i) => s + t.system - before[i].system, 0) / 1000;
  results.set(name, { user, sys, data });
  while (pidsOf(pattern).length > 0) await sleep(300); // this peer's round is over
}
await finished;

const splits = new Map([...results].map(([name, r]) => [name, split(r.data)]));
const cpuMs = new Map([...results].map(([name, r]) => [name, r.user + r.sys]));
console.log(`fan-out at ${RATE} updates/s; both gateways of each peer over ${SECS} s (ms of CPU):`);
for (const [name, r] of results) console.log(`  ${name}: user ${r.user}, system ${r.sys}`);
console.log(`one gateway of each peer, perf samples by kind (ms, scaled to that gateway's share of the CPU above):`);
console.log(`  ${'kind'.padEnd(46)} ${'product'.padStart(8)} ${'uws'.padStart(8)}`);
for (const [kind] of KINDS) {
  const cells = [...splits].map(([name, by]) => ((by.get(kind) / 100) * cpuMs.get(name) / 2).toFixed(0).padStart(8));
  console.log(`  ${kind.padEnd(46)} ${cells.join(' ')}`);
}
if (ratios) console.log(ratios);
rmSync(work, { recursive: true, force: true });
