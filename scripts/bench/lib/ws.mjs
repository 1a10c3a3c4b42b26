// WebSocket load helpers shared by the ws-* benchmark scenarios and loadtest/node/loadgen.mjs.
//
// A *plan* describes the load: `{ sessions: [{ id, token, devices: [{ id, url }] }] }`. Device 0
// of every session is its writer, the others are readers. A `Shard` holds the sockets of a plan
// (or of a slice of it) in one process:
//   connect()  opens every device with at most `concurrency` handshakes+AUTHs in flight; a device is
//              ready once AUTH_SUCCESS and then SNAPSHOT_RESPONSE have arrived
//   run()      open-loop STATE_UPDATE SETs at a fixed aggregate rate: update i is due at
//              t0 + i/rate and goes to writer i mod writers, whether or not earlier ones were
//              acknowledged. The value `{t, k, s}` carries the send time (performance.now() of the
//              sending process), the step and the sequence number; readers record now − t at
//              receipt, writers record the ACK latency. Then it waits (bounded) for the stragglers.
//   close()    closes every socket (terminates what does not close within a few seconds)
// `createLoad(plan, { procs })` runs the plan in this process (procs 0) or splits it by session
// over `procs` forked copies of this file (child_process.fork, IPC with the advanced
// serialization), and merges their results. A writer and its readers always live in one process,
// so every latency is measured on one clock.
//
// Every loop is bounded by a count and a deadline; abort() ends them early.
import { fork } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { Latencies, roundMs, roundRate } from './stats.mjs';

const SELF = fileURLToPath(import.meta.url);

export const SUBPROTOCOL_JSON = 'harmonyflow.v1.json';

/** WebSocket message types (SPEC §5). */
export const MT = Object.freeze({
  HEARTBEAT: 1, HEARTBEAT_ACK: 2, SNAPSHOT_REQUEST: 3, SNAPSHOT_RESPONSE: 4, STATE_UPDATE: 5, ERROR: 6, AUTH: 7,
  AUTH_SUCCESS: 8, AUTH_FAILURE: 9, DEVICE_JOINED: 10, DEVICE_LEFT: 11, DEVICE_LIST: 12, BROADCAST: 13,
  ADMIN_UPDATE: 14, STATE_UPDATE_ACK: 15, HANDOFF_REQUESTED: 16, HANDOFF_COMPLETED: 17, RECONNECT: 18,
});

// ---------------------------------------------------------------------------------------------
// targets and tokens

/** True for 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(hostname) {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Validates a ws:// or wss:// URL; throws unless it is on loopback or `allowRemote` is set. */
export function checkWsUrl(url, { allowRemote = false } = {}) {
  let u;
  try {
    u = new URL(url);
  } catch {
    throw new Error(`not a URL: ${url}`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`need a ws:// or wss:// URL, got ${url}`);
  if (!allowRemote && !isLoopbackHost(u.hostname)) {
    throw new Error(`${url} is not a loopback address; pass --allow-remote to load a remote server`);
  }
  return u.href;
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/** An HS256 access token the gateway accepts (`sub`, `role`, `typ:"access"`, `iat`, `exp`). */
export function mintAccessToken(secret, sub, { role = 'user', ttlSeconds = 3600, issuer, audience } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = { role, typ: 'access', sub, iat: now, exp: now + ttlSeconds };
  if (issuer) claims.iss = issuer;
  if (audience) claims.aud = audience;
  const body = b64url(JSON.stringify(claims));
  const sig = createHmac('sha256', secret).update(`${header}.${body}`).digest('base64url');
  return `${header}.${body}.${sig}`;
}

// ---------------------------------------------------------------------------------------------
// plans

/**
 * A plan of `sessions` sessions × `devices` devices. `tokenOf(s)` gives session s's token (every
 * device of a session uses its owner's token); `urlOf(s, d)` the endpoint of device d of session s.
 */
export function makePlan({ sessions, devices, tokenOf, urlOf, sessionIdOf, prefix = 'bench' }) {
  if (!(devices >= 2)) throw new Error('a plan needs at least 2 devices per session (one writer, one reader)');
  const out = [];
  for (let s = 0; s < sessions; s++) {
    const devs = [];
    for (let d = 0; d < devices; d++) devs.push({ id: `${prefix}-s${s}-d${d}`, url: urlOf(s, d) });
    out.push({ id: sessionIdOf(s), token: tokenOf(s), devices: devs });
  }
  return { sessions: out };
}

// ---------------------------------------------------------------------------------------------
// one process's sockets

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function errorSink(limit = 8) {
  const samples = [];
  return { samples, add: (msg) => void (samples.length < limit && samples.push(msg)) };
}

const take = (lat) => lat.values.slice(0, lat.n);

export class Shard {
  constructor(plan) {
    this.plan = plan;
    /** Flat device records, session-major. */
    this.devs = [];
    for (let s = 0; s < plan.sessions.length; s++) {
      const sess = plan.sessions[s];
      for (let d = 0; d < sess.devices.length; d++) {
        this.devs.push({
          s, d, id: sess.devices[d].id, url: sess.devices[d].url, ws: null,
          ready: false, closed: false, authAt: 0, lastVersion: -1, settle: null,
        });
      }
    }
    this.stopped = false;
    this.closing = false;
    this.cur = null; // the run in progress (or draining)
    // Counters for events outside a run (between steps, idle periods).
    this.idle = { errorFrames: 0, unexpectedCloses: 0, late: 0, resyncs: 0, reconnects: 0, orderErrors: 0 };
    this.errs = errorSink();
  }

  abort() {
    this.stopped = true;
  }

  /** Opens every device (bounded concurrency); resolves with counts and latencies. */
  async connect({ concurrency = 200, timeoutMs = 15_000, deadline = Date.now() + 120_000 } = {}) {
    const open = new Latencies(this.devs.length);
    const auth = new Latencies(this.devs.length);
    const ready = new Latencies(this.devs.length);
    const errs = errorSink();
    let next = 0;
    let ok = 0;
    let failed = 0;
    const worker = async () => {
      while (next < this.devs.length && !this.stopped && Date.now() < deadline) {
        const dev = this.devs[next++];
        const r = await this.openDevice(dev, Math.min(timeoutMs, Math.max(1, deadline - Date.now())));
        if (r.ok) {
          ok++;
          open.add(r.openMs);
          auth.add(r.authMs);
          ready.add(r.readyMs);
        } else {
          failed++;
          errs.add(`${dev.id}: ${r.error}`);
        }
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, this.devs.length)) }, worker));
    const wallMs = performance.now() - t0;
    const notRun = this.devs.length - next;
    return {
      attempted: next, ok, failed, notRun, wallMs, errorSamples: errs.samples,
      openMs: take(open), authMs: take(auth), readyMs: take(ready),
    };
  }

  openDevice(dev, timeoutMs) {
    return new Promise((resolve) => {
      const sess = this.plan.sessions[dev.s];
      const t0 = performance.now();
      let tOpen = 0;
      let done = false;
      const timer = setTimeout(() => finish(`no AUTH_SUCCESS + SNAPSHOT_RESPONSE within ${timeoutMs} ms`), timeoutMs);
      const finish = (error) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        dev.settle = null;
        if (error) {
          dev.closed = true;
          try {
            dev.ws?.terminate();
          } catch {
            // already gone
          }
          resolve({ ok: false, error });
        } else {
          dev.ready = true;
          const now = performance.now();
          resolve({ ok: true, openMs: tOpen - t0, authMs: dev.authAt - t0, readyMs: now - t0 });
        }
      };
      dev.settle = finish;
      let ws;
      try {
        ws = new WebSocket(dev.url, [SUBPROTOCOL_JSON], { perMessageDeflate: false, handshakeTimeout: timeoutMs });
      } catch (err) {
        finish(err.message);
        return;
      }
      dev.ws = ws;
      ws.on('open', () => {
        tOpen = performance.now();
        ws.send(JSON.stringify({
          type: MT.AUTH, timestamp: Date.now(),
          payload: { token: sess.token, device_id: dev.id, session_id: sess.id, device_type: 'bench', app_version: 'bench' },
        }));
      });
      ws.on('message', (data) => this.onMessage(dev, data));
      ws.on('error', (err) => finish(err.message));
      ws.on('close', (code, reason) => {
        const wasReady = dev.ready;
        dev.closed = true;
        dev.ready = false;
        finish(`closed ${code} ${reason}`);
        if (wasReady && !this.closing) {
          (this.cur ?? this.idle).unexpectedCloses++;
          this.errs.add(`${dev.id}: closed ${code} ${reason}`);
        }
      });
    });
  }

  onMessage(dev, data) {
    const now = performance.now();
    let env;
    try {
      env = JSON.parse(data);
    } catch {
      (this.cur ?? this.idle).errorFrames++;
      this.errs.add(`${dev.id}: undecodable frame`);
      return;
    }
    const p = env.payload ?? {};
    const r = this.cur;
    switch (env.type) {
      case MT.STATE_UPDATE: {
        if (typeof p.version === 'number') {
          if (p.version <= dev.lastVersion) {
            (r ?? this.idle).orderErrors++;
            this.errs.add(`${dev.id}: version ${p.version} after ${dev.lastVersion}`);
          }
          dev.lastVersion = p.version;
        }
        const v = p.value;
        if (v && typeof v.t === 'number') {
          if (r && v.k === r.step) {
            r.received++;
            r.lat.add(now - v.t);
          } else (r ?? this.idle).late++;
        }
        return;
      }
      case MT.STATE_UPDATE_ACK: {
        const corr = typeof p.correlation_id === 'string' ? p.correlation_id : env.correlation_id;
        if (!r || typeof corr !== 'string') return void this.idle.late++;
        const dot = corr.indexOf('.');
        const i = Number(corr.slice(dot + 1));
        if (Number(corr.slice(0, dot)) !== r.step || !(i >= 0 && i < r.sendAt.length) || r.sendAt[i] === 0) return void r.late++;
        r.acked++;
        r.ack.add(now - r.sendAt[i]);
        return;
      }
      case MT.AUTH_SUCCESS:
        dev.authAt = now;
        if (typeof p.version === 'number') dev.lastVersion = p.version;
        return;
      case MT.SNAPSHOT_RESPONSE:
        if (typeof p.version === 'number') dev.lastVersion = p.version;
        if (dev.settle && dev.authAt > 0) dev.settle(null);
        else (r ?? this.idle).resyncs++;
        return;
      case MT.AUTH_FAILURE:
        if (dev.settle) dev.settle(`AUTH_FAILURE ${p.code}: ${p.message}`);
        return;
      case MT.ERROR:
        (r ?? this.idle).errorFrames++;
        this.errs.add(`${dev.id}: ERROR ${p.code}: ${p.message}`);
        return;
      case MT.RECONNECT:
        (r ?? this.idle).reconnects++;
        return;
      default:
      // DEVICE_JOINED/LEFT, BROADCAST, ADMIN_UPDATE, HEARTBEAT_ACK…: not measured
    }
  }

  /**
   * Open-loop SETs at `rate` updates/s for `durationMs`, then waits up to `drainMs` for every ACK
   * and delivery. `step` tags the values so late deliveries never count in another step.
   */
  async run({ step = 1, rate, durationMs, drainMs = 3000, key = 'bench' }) {
    if (!(rate > 0) || !(durationMs > 0)) throw new Error('run needs rate > 0 and durationMs > 0');
    const writers = [];
    for (const dev of this.devs) {
      if (dev.d !== 0 || !dev.ready) continue;
      let readers = 0;
      for (const o of this.devs) if (o.s === dev.s && o.d !== 0 && o.ready) readers++;
      writers.push({ dev, readers });
    }
    const total = Math.max(0, Math.round((rate * durationMs) / 1000));
    const r = {
      step, sent: 0, acked: 0, expected: 0, received: 0, late: 0, errorFrames: 0, unexpectedCloses: 0,
      orderErrors: 0, resyncs: 0, reconnects: 0, notSent: 0,
      sendAt: new Float64Array(total), lat: new Latencies(total * 2), ack: new Latencies(total), lag: new Latencies(total),
    };
    if (writers.length === 0 || total === 0) {
      r.notSent = total;
      return this.result(r, 0, 0);
    }
    this.cur = r;
    // This process's own event-loop stalls: they delay sends and receipts alike.
    const ELD_RES_MS = 5;
    const eld = monitorEventLoopDelay({ resolution: ELD_RES_MS }); // records whole timer intervals
    eld.enable();
    const interval = 1000 / rate;
    const t0 = performance.now() + 2;
    const hardEnd = t0 + durationMs * 1.5 + 2000; // the scheduler gives up on a hopelessly late tail
    const keyJson = JSON.stringify(key);
    let i = 0;
    await new Promise((resolve) => {
      const tick = () => {
        let now = performance.now();
        while (i < total && t0 + i * interval <= now && !this.stopped) {
          const w = writers[i % writers.length];
          if (w.dev.ready) {
            const due = t0 + i * interval;
            now = performance.now();
            w.dev.ws.send(
              `{"type":5,"timestamp":${Date.now()},"correlation_id":"${step}.${i}",` +
                `"payload":{"key":${keyJson},"value":{"t":${now},"k":${step},"s":${i}},"operation":"SET"}}`,
            );
            r.sendAt[i] = now;
            r.lag.add(now - due);
            r.sent++;
            r.expected += w.readers;
          } else r.notSent++;
          i++;
        }
        if (i < total && !this.stopped && now < hardEnd) {
          setTimeout(tick, Math.max(0, t0 + i * interval - performance.now()));
        } else resolve();
      };
      setTimeout(tick, 2);
    });
    r.notSent += total - i;
    eld.disable();
    r.loopDelayP99Ms = eld.count > 0 ? Math.max(0, eld.percentile(99) / 1e6 - ELD_RES_MS) : 0;
    r.loopDelayMaxMs = eld.count > 0 ? Math.max(0, eld.max / 1e6 - ELD_RES_MS) : 0;
    const sendWallMs = performance.now() - t0;
    const drainEnd = performance.now() + drainMs;
    while ((r.received < r.expected || r.acked < r.sent) && performance.now() < drainEnd && !this.stopped) await sleep(10);
    const drainWaitMs = performance.now() - t0 - sendWallMs;
    this.cur = null;
    return this.result(r, sendWallMs, drainWaitMs);
  }

  result(r, sendWallMs, drainWaitMs) {
    const { sendAt, lat, ack, lag, ...counts } = r;
    return { ...counts, sendWallMs, drainWaitMs, errorSamples: this.errs.samples.splice(0), latMs: take(lat), ackMs: take(ack), lagMs: take(lag) };
  }

  /** Counters of events outside runs since the last call (and resets them). */
  idleCounters() {
    const c = { ...this.idle, errorSamples: this.errs.samples.splice(0) };
    for (const k of Object.keys(this.idle)) this.idle[k] = 0;
    return c;
  }

  readyCount() {
    let n = 0;
    for (const d of this.devs) if (d.ready) n++;
    return n;
  }

  /** Closes every socket; terminates those still open after `timeoutMs`. */
  async close({ timeoutMs = 3000 } = {}) {
    this.closing = true;
    this.stopped = true;
    const live = this.devs.filter((d) => d.ws && d.ws.readyState !== WebSocket.CLOSED);
    for (const d of live) {
      try {
        if (d.ws.readyState === WebSocket.OPEN) d.ws.close(1000, 'bench done');
        else d.ws.terminate();
      } catch {
        // ignore
      }
    }
    const end = Date.now() + timeoutMs;
    while (Date.now() < end && live.some((d) => d.ws.readyState !== WebSocket.CLOSED)) await sleep(20);
    for (const d of live) if (d.ws.readyState !== WebSocket.CLOSED) d.ws.terminate();
    return { closed: live.length };
  }
}

// ---------------------------------------------------------------------------------------------
// the same Shard in a forked process

class RemoteShard {
  constructor(plan) {
    this.child = fork(SELF, [], {
      env: { ...process.env, HF_WS_SHARD: '1' },
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    this.pid = this.child.pid;
    this.nextId = 1;
    this.pending = new Map();
    this.exited = new Promise((resolve) => this.child.once('exit', (code, sig) => resolve(code ?? sig)));
    this.child.on('message', (m) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new Error(m.error));
    });
    this.exited.then((code) => {
      for (const p of this.pending.values()) p.reject(new Error(`load worker exited (${code})`));
      this.pending.clear();
    });
    this.ready = this.call('init', plan);
  }

  call(method, arg) {
    if (this.child.exitCode !== null || this.child.signalCode !== null || !this.child.connected) {
      return Promise.reject(new Error('load worker is gone'));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.child.send({ id, method, arg });
    });
  }

  abort() {
    if (this.child.connected) this.child.send({ id: 0, method: 'abort' });
  }

  async close(opts) {
    try {
      await this.call('close', opts);
    } catch {
      // gone already
    }
    if (this.child.connected) this.child.disconnect();
    let t;
    const quit = await Promise.race([this.exited.then(() => true), new Promise((r) => (t = setTimeout(() => r(false), 3000)))]);
    clearTimeout(t);
    if (!quit) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

// A forked copy of this file: serve one Shard over IPC until the parent disconnects.
if (process.env.HF_WS_SHARD === '1' && typeof process.send === 'function' && process.argv[1] === SELF) {
  let shard = null;
  // Ctrl-C reaches the whole process group: the parent decides when this worker stops.
  process.on('SIGINT', () => shard?.abort());
  process.on('message', async (m) => {
    if (m.method === 'abort') return void shard?.abort();
    try {
      let result;
      if (m.method === 'init') shard = new Shard(m.arg);
      else if (['connect', 'run', 'close', 'idleCounters', 'readyCount'].includes(m.method)) result = await shard[m.method](m.arg);
      else throw new Error(`unknown method ${m.method}`);
      process.send({ id: m.id, ok: true, result });
    } catch (err) {
      process.send({ id: m.id, ok: false, error: String(err?.message ?? err) });
    }
  });
  process.on('disconnect', () => {
    // The parent is gone or done: drop every socket and leave.
    for (const d of shard?.devs ?? []) d.ws?.terminate();
    process.exit(0);
  });
}

// ---------------------------------------------------------------------------------------------
// one facade over 1..n shards

function concat(arrays) {
  let n = 0;
  for (const a of arrays) n += a.length;
  const lat = new Latencies(n);
  for (const a of arrays) for (let i = 0; i < a.length; i++) lat.add(a[i]);
  return lat;
}

const sumOf = (list, k) => list.reduce((a, x) => a + (x[k] ?? 0), 0);

/**
 * Runs `plan` in this process (procs 0) or in `procs` forked workers (sessions dealt round-robin).
 * Returns { processes, connect(opts), run(opts), idleCounters(), close(), abort(), kill() } whose
 * results are merged over the shards: counts summed, latencies as Latencies (stats.mjs).
 */
export async function createLoad(plan, { procs = 0 } = {}) {
  const n = Math.max(0, Math.min(procs, plan.sessions.length));
  const parts = n === 0 ? [plan] : Array.from({ length: n }, (_, k) => ({ sessions: plan.sessions.filter((_, s) => s % n === k) }));
  const shards = n === 0 ? [new Shard(plan)] : parts.map((p) => new RemoteShard(p));
  if (n > 0) await Promise.all(shards.map((s) => s.ready));
  const all = (fn) => Promise.all(shards.map(fn));
  return {
    processes: Math.max(1, n),
    forked: n > 0,
    pids: shards.map((s) => s.pid ?? process.pid),

    async connect({ concurrency = 200, ...opts } = {}) {
      const per = Math.max(1, Math.ceil(concurrency / shards.length));
      const t0 = performance.now();
      const rs = await all((s) => (n === 0 ? s.connect({ concurrency: per, ...opts }) : s.call('connect', { concurrency: per, ...opts })));
      const wallMs = performance.now() - t0;
      return {
        attempted: sumOf(rs, 'attempted'), ok: sumOf(rs, 'ok'), failed: sumOf(rs, 'failed'), notRun: sumOf(rs, 'notRun'), wallMs,
        errorSamples: rs.flatMap((r) => r.errorSamples),
        open: concat(rs.map((r) => r.openMs)), auth: concat(rs.map((r) => r.authMs)), ready: concat(rs.map((r) => r.readyMs)),
      };
    },

    async run({ rate, ...opts }) {
      const per = rate / shards.length;
      const rs = await all((s) => (n === 0 ? s.run({ rate: per, ...opts }) : s.call('run', { rate: per, ...opts })));
      const out = { rate };
      for (const k of ['sent', 'acked', 'expected', 'received', 'late', 'errorFrames', 'unexpectedCloses', 'orderErrors', 'resyncs', 'reconnects', 'notSent']) out[k] = sumOf(rs, k);
      out.sendWallMs = Math.max(...rs.map((r) => r.sendWallMs));
      out.drainWaitMs = Math.max(...rs.map((r) => r.drainWaitMs));
      out.loopDelayP99Ms = Math.max(...rs.map((r) => r.loopDelayP99Ms ?? 0));
      out.loopDelayMaxMs = Math.max(...rs.map((r) => r.loopDelayMaxMs ?? 0));
      out.errorSamples = rs.flatMap((r) => r.errorSamples);
      out.lat = concat(rs.map((r) => r.latMs));
      out.ack = concat(rs.map((r) => r.ackMs));
      out.lag = concat(rs.map((r) => r.lagMs));
      out.lost = Math.max(0, out.expected - out.received);
      out.unacked = Math.max(0, out.sent - out.acked);
      out.achievedRate = out.sendWallMs > 0 ? (out.sent / out.sendWallMs) * 1000 : 0;
      return out;
    },

    async idleCounters() {
      const rs = await all((s) => (n === 0 ? s.idleCounters() : s.call('idleCounters')));
      const out = {};
      for (const k of ['errorFrames', 'unexpectedCloses', 'late', 'resyncs', 'reconnects', 'orderErrors']) out[k] = sumOf(rs, k);
      out.errorSamples = rs.flatMap((r) => r.errorSamples);
      return out;
    },

    async readyCount() {
      const counts = await all((s) => (n === 0 ? s.readyCount() : s.call('readyCount')));
      return counts.reduce((a, v) => a + v, 0);
    },

    abort() {
      for (const s of shards) s.abort();
    },

    async close() {
      await all((s) => s.close());
    },

    /** Synchronous last resort: drops sockets / kills workers. */
    kill() {
      for (const s of shards) {
        if (s instanceof RemoteShard) s.kill();
        else for (const d of s.devs) d.ws?.terminate();
      }
    },
  };
}

// ---------------------------------------------------------------------------------------------
// reporting helpers

/** The problems of a run that count as errors: lost deliveries, missing ACKs, ERROR frames… */
export function runErrors(r) {
  return r.lost + r.unacked + r.notSent + r.errorFrames + r.unexpectedCloses + r.orderErrors;
}

/** One line for logs. */
export function describeRun(r) {
  const s = r.lat.summary();
  const a = r.ack.summary();
  const lag = r.lag.summary();
  const f = (v) => (v === null ? 'n/a' : v.toFixed(2));
  return (
    `target ${r.rate}/s, sent ${r.sent} (${r.achievedRate.toFixed(0)}/s), received ${r.received}/${r.expected}, lost ${r.lost}, ` +
    `acked ${r.acked}, latency p50 ${f(s.p50)} p99 ${f(s.p99)} max ${f(s.max)} ms, ack p50 ${f(a.p50)} p99 ${f(a.p99)} ms, ` +
    `send lag p99 ${f(lag.p99)} ms, client loop delay p99 ${f(r.loopDelayP99Ms)} max ${f(r.loopDelayMaxMs)} ms, errors ${runErrors(r)}` +
    (r.late ? `, late ${r.late}` : '') + (r.resyncs ? `, resyncs ${r.resyncs}` : '')
  );
}

export { roundMs, roundRate };
