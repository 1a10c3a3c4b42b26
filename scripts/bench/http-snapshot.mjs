// HTTP snapshot write/read latency and throughput, per store (private Redis, embedded).
//
// Per store, on a fresh gateway:
//   warm-up   unmeasured writes + reads on separate sessions (JIT, connections, Redis scripts)
//   write c16 SESSIONS × 10 unconditional POST /session/snapshot (round-robin: write r of every
//             session, then write r+1…), ~300-byte state, 16 in flight
//   read  c16 10 GET /session/:uuid per session, 16 in flight; each must show version 10 and the
//             state of the write that got version 10
//   write c1  one more write per session (first SERIAL sessions), one at a time → version 11
//   read  c1  one read per such session, one at a time → version 11
// Every response is checked (write: 201 exactly for version 1, else 200; versions 1..10 each handed
// out once per session; read: 200, version, ETag, state). Failed checks, transport errors and
// requests not sent before the time limit are all counted in the phase's `errors` row.
import { randomUUID } from 'node:crypto';
import { KeepAliveClient, runPool } from './lib/http.mjs';
import { Latencies, roundMs, roundRate } from './lib/stats.mjs';

export const name = 'http-snapshot';
export const description = 'POST /session/snapshot + GET /session/:uuid over keep-alive node:http, redis and embedded stores';

const CONCURRENCY = 16;
const WRITES_PER_SESSION = 10;
const STATE_BYTES = 300;

const FULL = { sessions: 1000, reads: 10_000, serial: 1000, warmup: 1000, warmSessions: 32, users: 50, phaseMs: 35_000 };
const QUICK = { sessions: 100, reads: 1000, serial: 100, warmup: 200, warmSessions: 16, users: 10, phaseMs: 15_000 };

const MOODS = ['calm', 'focused', 'anxious', 'tired', 'energized'];

/** A session state whose JSON is exactly STATE_BYTES long; `seq` says which write produced it. */
function stateFor(sessionIndex, seq) {
  const s = {
    meditation_progress: (sessionIndex * 7 + seq * 10) % 101,
    current_mood: MOODS[(sessionIndex + seq) % MOODS.length],
    streak_days: sessionIndex % 365,
    seq,
    last_exercise: 'box-breathing',
    preferences: { theme: 'dark', ambient_sound: 'rain', volume: 0.7, reminders: true },
    completed_today: ['morning-check-in', 'breathing-4-7-8'],
    notes: '',
  };
  s.notes = 'n'.repeat(Math.max(0, STATE_BYTES - JSON.stringify(s).length));
  return s;
}

function parse(body) {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/** Runs prebuilt requests through a pool, checking each response; never throws. */
async function phase(ctx, label, { client, concurrency, requests, check, deadline }) {
  if (ctx.signal.aborted) throw new Error(`aborted before ${label}`);
  const lat = new Latencies(requests.length);
  let errors = 0;
  const samples = [];
  const fail = (msg) => {
    errors++;
    if (samples.length < 5) samples.push(msg);
  };
  const pool = await runPool({
    count: requests.length,
    concurrency,
    deadline,
    signal: ctx.signal,
    task: async (i) => {
      const r = requests[i];
      const res = await client.request(r.method, r.path, r.headers, r.body);
      if (res.status === 0) return fail(`#${i} ${r.method} ${r.path}: ${res.error}`);
      lat.add(res.ms);
      const problem = check(i, res);
      if (problem) fail(`#${i} ${r.method} ${r.path}: ${problem}`);
    },
  });
  if (pool.notRun > 0) {
    errors += pool.notRun;
    samples.push(`${pool.notRun} requests not sent (${ctx.signal.aborted ? 'aborted' : 'time limit'})`);
  }
  if (pool.thrown > 0) {
    errors += pool.thrown;
    samples.push(`${pool.thrown} requests threw`);
  }
  const sum = lat.summary();
  const rps = sum.n > 0 ? (sum.n / pool.wallMs) * 1000 : null;
  const f = (v, d) => (v === null ? 'n/a' : v.toFixed(d));
  ctx.log(
    `${label}: ${sum.n}/${requests.length} in ${(pool.wallMs / 1000).toFixed(2)} s, ` +
      `p50 ${f(sum.p50, 3)} ms, p99 ${f(sum.p99, 3)} ms, ${f(rps, 0)} req/s, errors ${errors}`,
  );
  for (const s of samples) ctx.log(`${label}: error: ${s}`);
  return { ...sum, rps, errors, wallMs: pool.wallMs };
}

async function benchStore(ctx, kind, cfg) {
  const target = await ctx.startStore(kind);
  ctx.log(`${kind}: gateway ${target.url}${target.redis ? ` on ${target.redis.url}` : ''}`);
  const clients = [];
  try {
    const auth = [];
    for (let u = 0; u < cfg.users; u++) auth.push(`Bearer ${await ctx.token(`bench-user-${u}`, 'user')}`);
    const N = cfg.sessions;
    const ids = Array.from({ length: N }, () => randomUUID());
    const owner = (s) => auth[s % cfg.users];

    // Per session: bitmask of versions handed out, the highest version and the seq that got it.
    const mask = new Uint32Array(N);
    const lastVersion = new Int32Array(N);
    const lastSeq = new Int32Array(N).fill(-1);

    const writeReq = (sid, authz, state) => {
      const body = Buffer.from(JSON.stringify({ session_id: sid, state_data: state, device_id: 'bench-device', app_version: 'bench' }));
      return {
        method: 'POST',
        path: '/session/snapshot',
        headers: { authorization: authz, 'content-type': 'application/json', 'content-length': body.length },
        body,
      };
    };
    const readReq = (sid, authz) => ({ method: 'GET', path: `/session/${sid}`, headers: { authorization: authz }, body: undefined });

    /** Checks one write response for session s written with seq; records the version it got. */
    const checkWrite = (s, seq, res) => {
      if (res.status !== 200 && res.status !== 201) return `status ${res.status} ${String(res.body).slice(0, 160)}`;
      const b = parse(res.body);
      if (!b) return 'body is not JSON';
      if (b.session_id !== ids[s]) return `session_id ${b.session_id}`;
      const v = b.version;
      if (!Number.isInteger(v) || v < 1 || v > 30) return `version ${v}`;
      if ((res.status === 201) !== (v === 1)) return `status ${res.status} for version ${v}`;
      if (b.state_data?.seq !== seq) return `state_data.seq ${b.state_data?.seq}, sent ${seq}`;
      if (res.headers.etag !== `"${v}"`) return `ETag ${res.headers.etag} for version ${v}`;
      if (mask[s] & (1 << v)) return `version ${v} handed out twice`;
      mask[s] |= 1 << v;
      if (v > lastVersion[s]) {
        lastVersion[s] = v;
        lastSeq[s] = seq;
      }
      return null;
    };
    /** Checks one read of session s against the last write's version and state. */
    const checkRead = (s, expectVersion, res) => {
      if (res.status !== 200) return `status ${res.status} ${String(res.body).slice(0, 160)}`;
      const b = parse(res.body);
      if (!b) return 'body is not JSON';
      if (b.session_id !== ids[s]) return `session_id ${b.session_id}`;
      if (b.version !== expectVersion) return `version ${b.version}, expected ${expectVersion}`;
      if (b.state_data?.seq !== lastSeq[s]) return `state_data.seq ${b.state_data?.seq}, expected ${lastSeq[s]} (last write)`;
      if (res.headers.etag !== `"${expectVersion}"`) return `ETag ${res.headers.etag}`;
      return null;
    };
    const deadline = () => Math.min(Date.now() + cfg.phaseMs, ctx.deadline - 5_000);

    const c16 = new KeepAliveClient(target.url, { maxSockets: CONCURRENCY });
    clients.push(c16);

    // Warm-up on separate sessions, not measured; failures still count as errors.
    const warmIds = Array.from({ length: cfg.warmSessions }, () => randomUUID());
    const warmOwner = (w) => auth[w % cfg.users];
    const warmW = await phase(ctx, `${kind} warm-up write`, {
      client: c16, concurrency: CONCURRENCY, deadline: deadline(),
      requests: Array.from({ length: cfg.warmup }, (_, i) => writeReq(warmIds[i % warmIds.length], warmOwner(i % warmIds.length), stateFor(i, 0))),
      check: (_, res) => (res.status === 200 || res.status === 201 ? null : `status ${res.status}`),
    });
    const warmR = await phase(ctx, `${kind} warm-up read`, {
      client: c16, concurrency: CONCURRENCY, deadline: deadline(),
      requests: Array.from({ length: cfg.warmup }, (_, i) => readReq(warmIds[i % warmIds.length], warmOwner(i % warmIds.length))),
      check: (_, res) => (res.status === 200 ? null : `status ${res.status}`),
    });

    // write c16: job i writes session i % N with seq ⌊i / N⌋.
    const writes = N * WRITES_PER_SESSION;
    const w16 = await phase(ctx, `${kind} write c${CONCURRENCY}`, {
      client: c16, concurrency: CONCURRENCY, deadline: deadline(),
      requests: Array.from({ length: writes }, (_, i) => writeReq(ids[i % N], owner(i % N), stateFor(i % N, Math.floor(i / N)))),
      check: (i, res) => checkWrite(i % N, Math.floor(i / N), res),
    });
    const fullMask = ((1 << (WRITES_PER_SESSION + 1)) - 1) & ~1; // versions 1..10
    let badHistories = 0;
    for (let s = 0; s < N; s++) {
      if (mask[s] !== fullMask) {
        if (badHistories++ < 5) ctx.log(`${kind}: session ${ids[s]} got versions ${mask[s].toString(2)} (binary), expected 1..${WRITES_PER_SESSION}`);
      }
    }
    w16.errors += badHistories;

    // read c16: job i reads session i % N, expecting version 10.
    const r16 = await phase(ctx, `${kind} read c${CONCURRENCY}`, {
      client: c16, concurrency: CONCURRENCY, deadline: deadline(),
      requests: Array.from({ length: cfg.reads }, (_, i) => readReq(ids[i % N], owner(i % N))),
      check: (i, res) => checkRead(i % N, WRITES_PER_SESSION, res),
    });
    c16.close();

    // Concurrency 1: one more write per session (→ version 11), then one read each.
    const c1 = new KeepAliveClient(target.url, { maxSockets: 1 });
    clients.push(c1);
    const serial = Math.min(cfg.serial, N);
    const w1 = await phase(ctx, `${kind} write c1`, {
      client: c1, concurrency: 1, deadline: deadline(),
      requests: Array.from({ length: serial }, (_, s) => writeReq(ids[s], owner(s), stateFor(s, WRITES_PER_SESSION))),
      check: (s, res) => checkWrite(s, WRITES_PER_SESSION, res) ?? (lastVersion[s] === WRITES_PER_SESSION + 1 ? null : `version ${lastVersion[s]}, expected ${WRITES_PER_SESSION + 1}`),
    });
    const r1 = await phase(ctx, `${kind} read c1`, {
      client: c1, concurrency: 1, deadline: deadline(),
      requests: Array.from({ length: serial }, (_, s) => readReq(ids[s], owner(s))),
      check: (s, res) => checkRead(s, WRITES_PER_SESSION + 1, res),
    });

    const rows = [];
    const add = (metric, value, unit) => rows.push(ctx.row(`${kind}.${metric}`, value, unit));
    const full = (op, r) => {
      add(`${op}.c${CONCURRENCY}.p50`, roundMs(r.p50), 'ms');
      add(`${op}.c${CONCURRENCY}.p90`, roundMs(r.p90), 'ms');
      add(`${op}.c${CONCURRENCY}.p99`, roundMs(r.p99), 'ms');
      add(`${op}.c${CONCURRENCY}.max`, roundMs(r.max), 'ms');
      add(`${op}.c${CONCURRENCY}.throughput`, roundRate(r.rps), 'req/s');
      add(`${op}.c${CONCURRENCY}.errors`, r.errors, 'count');
    };
    w16.errors += warmW.errors;
    r16.errors += warmR.errors;
    full('write', w16);
    full('read', r16);
    add('write.c1.p50', roundMs(w1.p50), 'ms');
    add('write.c1.p99', roundMs(w1.p99), 'ms');
    add('write.c1.errors', w1.errors, 'count');
    add('read.c1.p50', roundMs(r1.p50), 'ms');
    add('read.c1.p99', roundMs(r1.p99), 'ms');
    add('read.c1.errors', r1.errors, 'count');
    return rows;
  } finally {
    for (const c of clients) c.close();
    await target.stop();
  }
}

export async function run(ctx) {
  const cfg = ctx.quick ? QUICK : FULL;
  const rows = [ctx.row('state_bytes', JSON.stringify(stateFor(0, 0)).length, 'B')];
  for (const kind of ctx.stores) {
    if (ctx.signal.aborted) break;
    rows.push(...(await benchStore(ctx, kind, cfg)));
  }
  return rows;
}
