// Cross-node WebSocket latency on a 3-gateway cluster sharing one private Redis, and a step search
// for the highest update rate that keeps p99 < 10 ms with zero loss.
//
// SESSIONS sessions × 3 devices; device d of session s connects to node (s + d) mod 3, so each
// session has one device on every node and every delivery crosses Redis pub/sub to another node.
// Device 0 writes, devices 1 and 2 read. After a short warm-up (not measured), open-loop
// STATE_UPDATE SETs (see ws-latency.mjs: update i at t0 + i/rate from writer i mod SESSIONS, value
// carries the send time) run at each rate of STEPS for STEP_MS, then a bounded wait for every ACK
// and delivery. A step passes when p99 < 10 ms, nothing is lost or unacknowledged, no ERROR frame
// arrives and the generator reached ≥ 95 % of the rate; the search stops at the first step that
// does not pass, and best_rate is the last one that did (0 when none did). Values are tagged with
// their step, so a late delivery never counts for the next step.
//
// The machine running this shares its cores between 3 gateways, Redis and the load generator;
// these are the numbers of that setup, not of a cluster with a core per node.
import { randomUUID } from 'node:crypto';
import { createLoad, describeRun, makePlan } from './lib/ws.mjs';
import { roundMs, roundRate } from './lib/stats.mjs';

export const name = 'ws-cluster';
export const description = '3 gateways + 1 Redis: cross-node writer→device latency, step search for the highest rate with p99 < 10 ms and no loss';

const NODES = 3;
const P99_LIMIT_MS = 10;
const GW_ENV = {
  WS_RATE_PER_SECOND: '100000', WS_RATE_BURST: '100000',
  REDIS_ADDR: undefined, REDIS_PASSWORD: undefined, REDIS_DB: undefined, REDIS_CLUSTER_NODES: undefined,
};
const FULL = { sessions: 1000, users: 200, warmupRate: 500, warmupMs: 2000, steps: [1000, 1500, 2000, 3000, 4000, 6000, 8000, 10000], stepMs: 5000, drainMs: 5000 };
const QUICK = { sessions: 200, users: 40, warmupRate: 500, warmupMs: 1000, steps: [1000, 2000], stepMs: 2000, drainMs: 3000 };
const PROCS = 0; // clients in this process

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function run(ctx) {
  const cfg = ctx.quick ? QUICK : FULL;
  const redis = await ctx.startRedis();
  const gateways = [];
  for (let i = 0; i < NODES; i++) {
    const gw = await ctx.startGateway({ ...GW_ENV, REDIS_URL: redis.url, NODE_ID: `bench-node-${i}` });
    const health = await (await fetch(`${gw.url}/health`)).json();
    if (health.store !== 'redis') throw new Error(`gateway ${gw.url} reports store "${health.store}", expected redis`);
    gateways.push(gw);
  }
  ctx.log(`gateways ${gateways.map((g) => g.url).join(', ')} on ${redis.url}`);

  const tokens = [];
  for (let u = 0; u < cfg.users; u++) tokens.push(await ctx.token(`bench-cluster-user-${u}`));
  const plan = makePlan({
    sessions: cfg.sessions, devices: NODES, prefix: 'cl',
    tokenOf: (s) => tokens[s % cfg.users], urlOf: (s, d) => gateways[(s + d) % NODES].wsUrl, sessionIdOf: () => randomUUID(),
  });
  const load = await createLoad(plan, { procs: PROCS });
  ctx.onCleanup(() => load.close(), 'ws clients'); // if we time out; closed below otherwise
  const onAbort = () => load.abort();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const c = await load.connect({ concurrency: 200, deadline: ctx.deadline - 60_000 });
    ctx.log(`${c.ok}/${c.attempted} devices connected in ${(c.wallMs / 1000).toFixed(2)} s`);
    for (const e of c.errorSamples) ctx.log(`connect error: ${e}`);

    const warm = await load.run({ step: 1, rate: cfg.warmupRate, durationMs: cfg.warmupMs, drainMs: cfg.drainMs });
    ctx.log(`warm-up: ${describeRun(warm)}`);
    let errors = c.failed + c.notRun + warm.errorFrames + warm.unexpectedCloses + warm.orderErrors;

    const rows = [
      ctx.row('nodes', NODES, 'count'),
      ctx.row('sessions', cfg.sessions, 'count'),
      ctx.row('devices', cfg.sessions * NODES, 'count'),
      ctx.row('step_duration', cfg.stepMs / 1000, 's'),
      ctx.row('client_processes', load.processes, 'count'),
    ];
    let best = null;
    let step = 2;
    for (const rate of cfg.steps) {
      if (ctx.signal.aborted) break;
      // Leave room for the step, its drain and the shutdown of 3 gateways.
      if (Date.now() + cfg.stepMs + cfg.drainMs + 20_000 > ctx.deadline) {
        ctx.log(`no time left for ${rate}/s; stopping the search`);
        break;
      }
      const r = await load.run({ step: step++, rate, durationMs: cfg.stepMs, drainMs: cfg.drainMs });
      if (ctx.signal.aborted) break; // cut short: not a result
      const s = r.lat.summary();
      const a = r.ack.summary();
      const pass =
        s.p99 !== null && s.p99 < P99_LIMIT_MS && r.lost === 0 && r.unacked === 0 && r.notSent === 0 &&
        r.errorFrames === 0 && r.unexpectedCloses === 0 && r.orderErrors === 0 && r.achievedRate >= 0.95 * rate;
      ctx.log(`${pass ? 'pass' : 'FAIL'} ${describeRun(r)}`);
      for (const e of r.errorSamples) ctx.log(`error: ${e}`);
      errors += r.errorFrames + r.unexpectedCloses + r.orderErrors;
      const add = (metric, value, unit) => rows.push(ctx.row(`step.${rate}.${metric}`, value, unit));
      add('achieved', roundRate(r.achievedRate), 'upd/s');
      add('p50', roundMs(s.p50), 'ms');
      if (rate === cfg.steps[0]) add('p90', roundMs(s.p90), 'ms');
      add('p99', roundMs(s.p99), 'ms');
      if (rate === cfg.steps[0]) add('max', roundMs(s.max), 'ms');
      add('ack_p99', roundMs(a.p99), 'ms');
      add('lost', r.lost, 'count');
      add('pass', pass ? 1 : 0, 'bool');
      if (!pass) break;
      best = { rate, p50: s.p50, p99: s.p99 };
      await sleep(300);
    }
    const idle = await load.idleCounters();
    errors += idle.errorFrames + idle.unexpectedCloses + idle.orderErrors;
    for (const e of idle.errorSamples) ctx.log(`error: ${e}`);
    rows.push(ctx.row('best_rate', best ? best.rate : 0, 'upd/s'));
    rows.push(ctx.row('best_rate.p50', best ? roundMs(best.p50) : null, 'ms'));
    rows.push(ctx.row('best_rate.p99', best ? roundMs(best.p99) : null, 'ms'));
    rows.push(ctx.row('errors', errors, 'count'));
    ctx.log(`best rate with p99 < ${P99_LIMIT_MS} ms and no loss: ${best ? `${best.rate}/s` : 'none'}`);
    return rows;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    await load.close();
  }
}
