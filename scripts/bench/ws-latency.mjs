// WebSocket writer → other-device latency on one gateway, per store (private Redis, embedded).
//
// SESSIONS sessions × 2 devices (device 0 writes, device 1 reads), all connected and authenticated
// first. Then open-loop STATE_UPDATE SETs at a fixed aggregate RATE for DURATION: update i is sent
// at t0 + i/RATE by the writer of session i mod SESSIONS, whether or not earlier updates were
// acknowledged. The value carries the send time (performance.now() of the load generator), so the
// reader's latency is now − t at receipt: writer → gateway → store (Redis Lua + pub/sub, or the
// in-process bus) → gateway → reader, plus both ends' event loops. A short warm-up at the same
// rate (other tag, not measured) comes first. After the last send it waits (bounded) for every ACK
// and delivery; lost = expected deliveries − received (must be 0), counted in `errors` together
// with missing ACKs, ERROR frames, unexpected closes and out-of-order versions.
// `send_lag.p99` is how late the generator sent behind its schedule (its own overload shows there),
// `client_loop_delay.max` the longest stall of the generator's event loop (part of any latency).
import { randomUUID } from 'node:crypto';
import { createLoad, describeRun, makePlan, runErrors } from './lib/ws.mjs';
import { roundMs, roundRate } from './lib/stats.mjs';

export const name = 'ws-latency';
export const description = 'WebSocket STATE_UPDATE writer→reader latency at a fixed open-loop rate, 1 node, redis and embedded stores';

const GW_ENV = { WS_RATE_PER_SECOND: '100000', WS_RATE_BURST: '100000' };
const FULL = { sessions: 1000, users: 200, rate: 2000, durationMs: 10_000, warmupMs: 1500 };
const QUICK = { sessions: 200, users: 40, rate: 1000, durationMs: 3000, warmupMs: 1000 };
const PROCS = 0; // clients in this process

async function benchStore(ctx, kind, cfg) {
  const target = await ctx.startStore(kind, GW_ENV);
  ctx.log(`${kind}: gateway ${target.url}${target.redis ? ` on ${target.redis.url}` : ''}`);
  const tokens = [];
  for (let u = 0; u < cfg.users; u++) tokens.push(await ctx.token(`bench-lat-user-${u}`));
  const plan = makePlan({
    sessions: cfg.sessions, devices: 2, prefix: 'lat',
    tokenOf: (s) => tokens[s % cfg.users], urlOf: () => target.wsUrl, sessionIdOf: () => randomUUID(),
  });
  const load = await createLoad(plan, { procs: PROCS });
  ctx.onCleanup(() => load.close(), `${kind} ws clients`); // if we time out; closed below otherwise
  const onAbort = () => load.abort();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    const c = await load.connect({ concurrency: 200, deadline: ctx.deadline - 30_000 });
    ctx.log(`${kind}: ${c.ok}/${c.attempted} devices connected in ${(c.wallMs / 1000).toFixed(2)} s`);
    for (const e of c.errorSamples) ctx.log(`${kind}: connect error: ${e}`);

    const warm = await load.run({ step: 1, rate: cfg.rate, durationMs: cfg.warmupMs, drainMs: 3000 });
    ctx.log(`${kind}: warm-up: ${describeRun(warm)}`);
    const r = await load.run({ step: 2, rate: cfg.rate, durationMs: cfg.durationMs, drainMs: 5000 });
    ctx.log(`${kind}: ${describeRun(r)}`);
    for (const e of r.errorSamples) ctx.log(`${kind}: error: ${e}`);
    const idle = await load.idleCounters();

    const lat = r.lat.summary();
    const ack = r.ack.summary();
    const lag = r.lag.summary();
    const errors = runErrors(r) + c.failed + c.notRun + idle.errorFrames + idle.unexpectedCloses + idle.orderErrors;
    const add = (metric, value, unit) => ctx.row(`${kind}.${metric}`, value, unit);
    return [
      add('rate_target', cfg.rate, 'upd/s'),
      add('rate_achieved', roundRate(r.achievedRate), 'upd/s'),
      add('sent', r.sent, 'count'),
      add('received', r.received, 'count'),
      add('lost', r.lost, 'count'),
      add('latency.p50', roundMs(lat.p50), 'ms'),
      add('latency.p90', roundMs(lat.p90), 'ms'),
      add('latency.p99', roundMs(lat.p99), 'ms'),
      add('latency.max', roundMs(lat.max), 'ms'),
      add('ack.p50', roundMs(ack.p50), 'ms'),
      add('ack.p99', roundMs(ack.p99), 'ms'),
      add('send_lag.p99', roundMs(lag.p99), 'ms'),
      add('client_loop_delay.max', roundMs(r.loopDelayMaxMs), 'ms'),
      add('errors', errors, 'count'),
    ];
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    await load.close();
    await target.stop();
  }
}

export async function run(ctx) {
  const cfg = ctx.quick ? QUICK : FULL;
  const rows = [
    ctx.row('sessions', cfg.sessions, 'count'),
    ctx.row('devices', cfg.sessions * 2, 'count'),
    ctx.row('duration', cfg.durationMs / 1000, 's'),
    ctx.row('client_processes', Math.max(1, PROCS), 'count'),
  ];
  for (const kind of ctx.stores) {
    if (ctx.signal.aborted) break;
    rows.push(...(await benchStore(ctx, kind, cfg)));
  }
  return rows;
}
