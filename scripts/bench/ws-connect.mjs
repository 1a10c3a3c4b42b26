// WebSocket connect + AUTH rate and the gateway's memory per idle authenticated connection.
//
// One gateway on a private Redis. Warm-up: WARMUP sessions × 2 devices connect, AUTH and close
// (JIT, Redis scripts, allocator arenas), then ~2 s of quiet and the "before" readings: the
// gateway process's VmRSS (/proc/<pid>/status) and hf_nodejs_heap_size_used_bytes from /metrics.
// Then SESSIONS × 2 devices (distinct device ids, sessions owned by USERS users) open a WebSocket
// each and AUTH with at most CONCURRENCY handshakes+AUTHs in flight; a connection counts when
// AUTH_SUCCESS and the SNAPSHOT_RESPONSE after it have arrived. Reported: connections/s over the
// whole batch, connect→AUTH_SUCCESS percentiles (from `new WebSocket` to the frame), and after
// ~2 s of idling with every connection authenticated the "after" readings:
//   rss_per_conn  = (VmRSS after − before) / connections
//   heap_per_conn = (heap used after − before) / connections — approximate: the gateway is not
//                   told to collect garbage, so it includes whatever garbage is uncollected
// All clients live in one process (the bench runner's), reported as client_processes.
import { readFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { createLoad, makePlan } from './lib/ws.mjs';
import { roundMs, roundRate } from './lib/stats.mjs';

export const name = 'ws-connect';
export const description = 'WebSocket connect+AUTH rate (c200) and gateway RSS / heap per idle authenticated connection, redis store';

const GW_ENV = { WS_RATE_PER_SECOND: '100000', WS_RATE_BURST: '100000' };
const FULL = { sessions: 2500, devices: 2, users: 300, concurrency: 200, warmup: 100, settleMs: 2000 };
const QUICK = { sessions: 500, devices: 2, users: 60, concurrency: 200, warmup: 50, settleMs: 2000 };
const PROCS = 0; // clients in this process

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function rssBytes(pid) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

async function heapUsed(url) {
  try {
    const text = await (await fetch(`${url}/metrics`)).text();
    const m = /^hf_nodejs_heap_size_used_bytes(?:\{[^}]*\})?\s+(\S+)/m.exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const MiB = (b) => (b === null ? null : Math.round((b / 2 ** 20) * 10) / 10);

export async function run(ctx) {
  const cfg = ctx.quick ? QUICK : FULL;
  const target = await ctx.startStore('redis', GW_ENV);
  const pid = target.gateway.proc.pid;
  ctx.log(`gateway ${target.url} (pid ${pid}) on ${target.redis.url}`);

  const tokens = [];
  for (let u = 0; u < cfg.users; u++) tokens.push(await ctx.token(`bench-ws-user-${u}`));
  const plan = (sessions, prefix) =>
    makePlan({
      sessions, devices: cfg.devices, prefix,
      tokenOf: (s) => tokens[s % cfg.users],
      urlOf: () => target.wsUrl,
      sessionIdOf: () => randomUUID(),
    });
  const loads = [];
  ctx.onCleanup(async () => {
    for (const l of loads) await l.close();
  }, 'ws clients');
  const onAbort = () => loads.forEach((l) => l.abort());
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    // Warm-up, not measured.
    const warm = await createLoad(plan(cfg.warmup, 'warm'), { procs: PROCS });
    loads.push(warm);
    const w = await warm.connect({ concurrency: cfg.concurrency, deadline: ctx.deadline - 30_000 });
    await warm.close();
    ctx.log(`warm-up: ${w.ok}/${w.attempted} connected`);
    await sleep(cfg.settleMs);

    const rssBefore = await rssBytes(pid);
    const heapBefore = await heapUsed(target.url);

    const N = cfg.sessions * cfg.devices;
    const load = await createLoad(plan(cfg.sessions, 'conn'), { procs: PROCS });
    loads.push(load);
    const c = await load.connect({ concurrency: cfg.concurrency, timeoutMs: 20_000, deadline: ctx.deadline - 20_000 });
    const auth = c.auth.summary();
    const ready = c.ready.summary();
    const open = c.open.summary();
    const rate = c.ok > 0 ? (c.ok / c.wallMs) * 1000 : null;
    ctx.log(
      `${c.ok}/${N} connected+authenticated in ${(c.wallMs / 1000).toFixed(2)} s (${rate?.toFixed(0)}/s), ` +
        `connect→AUTH_SUCCESS p50 ${auth.p50?.toFixed(2)} p99 ${auth.p99?.toFixed(2)} ms, failed ${c.failed}, not run ${c.notRun}`,
    );
    for (const e of c.errorSamples) ctx.log(`connect error: ${e}`);

    await sleep(cfg.settleMs);
    const idle = await load.readyCount();
    const rssAfter = await rssBytes(pid);
    const heapAfter = await heapUsed(target.url);
    const counters = await load.idleCounters();
    for (const e of counters.errorSamples) ctx.log(`idle error: ${e}`);
    const rssPer = idle > 0 ? Math.round((rssAfter - rssBefore) / idle) : null;
    const heapPer = idle > 0 && heapBefore !== null && heapAfter !== null ? Math.round((heapAfter - heapBefore) / idle) : null;
    ctx.log(
      `${idle} idle authenticated: gateway RSS ${MiB(rssBefore)} → ${MiB(rssAfter)} MiB (${rssPer} B/conn), ` +
        `heap used ${MiB(heapBefore)} → ${MiB(heapAfter)} MiB (~${heapPer} B/conn, approximate: no forced GC)`,
    );

    await load.close();
    const errors = c.failed + c.notRun + (N - idle) + counters.errorFrames + counters.unexpectedCloses;
    return [
      ctx.row('connections', N, 'count'),
      ctx.row('client_processes', load.processes, 'count'),
      ctx.row('concurrency', cfg.concurrency, 'count'),
      ctx.row('connect.rate', roundRate(rate), 'conn/s'),
      ctx.row('connect_auth.p50', roundMs(auth.p50), 'ms'),
      ctx.row('connect_auth.p90', roundMs(auth.p90), 'ms'),
      ctx.row('connect_auth.p99', roundMs(auth.p99), 'ms'),
      ctx.row('connect_auth.max', roundMs(auth.max), 'ms'),
      ctx.row('connect_open.p50', roundMs(open.p50), 'ms'),
      ctx.row('connect_open.p99', roundMs(open.p99), 'ms'),
      ctx.row('connect_snapshot.p99', roundMs(ready.p99), 'ms'),
      ctx.row('idle_authenticated', idle, 'count'),
      ctx.row('gateway.rss_before', MiB(rssBefore), 'MiB'),
      ctx.row('gateway.rss_after', MiB(rssAfter), 'MiB'),
      ctx.row('rss_per_conn', rssPer, 'B'),
      ctx.row('gateway.heap_before', MiB(heapBefore), 'MiB'),
      ctx.row('gateway.heap_after', MiB(heapAfter), 'MiB'),
      ctx.row('heap_per_conn_approx', heapPer, 'B'),
      ctx.row('connect.errors', errors, 'count'),
    ];
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    for (const l of loads) await l.close();
  }
}
