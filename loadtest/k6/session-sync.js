// HarmonyFlow: cross-device sync latency over WebSocket.
//
// Every pair of VUs (PAIR_SIZE devices) shares one session. Each VU authenticates (AUTH, type 7)
// as a device of that session, then sends STATE_UPDATE INCREMENT (type 5) at RATE per second on
// its own key. The INCREMENT delta *is* the send time (ms since the test's epoch), so when the
// other device receives the STATE_UPDATE (with `delta`, or `value` minus the value it last saw)
// it knows when the writer sent it: hf_sync_latency = receive time - send time, writer -> other
// device, through whichever gateway nodes the two sockets landed on.
//
//   k6 run -e TOKEN="$(npm run -s token -- --sub load-1 --ttl 3600)" loadtest/k6/session-sync.js
//   k6 run -e TOKENS_FILE=$PWD/tokens.txt -e VUS=200 -e RATE=10 -e DURATION=5m loadtest/k6/session-sync.js
//
// Latency is measured across VUs of one k6 process (one clock). Do not split a pair across
// machines in distributed runs unless their clocks are tightly synchronised.
import { check, sleep } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { envNumber, loadTokens, randomHex8, sessionUuid, wsUrl, T } from './lib.js';
import { ackTracker, openDevice } from './device.js';

const TOKENS = loadTokens();
const URL = wsUrl();
const VUS = Math.round(envNumber('VUS', 20));
const PAIR_SIZE = Math.max(2, Math.round(envNumber('PAIR_SIZE', 2)));
const RATE = envNumber('RATE', 5); // updates per second per VU (server limit: 100/s per connection)
const HOLD_S = envNumber('HOLD_SECONDS', 60); // each connection lives this long, then reconnects
const ACK_TIMEOUT_MS = envNumber('ACK_TIMEOUT_MS', 5000);
const WARMUP_MS = envNumber('WARMUP_MS', 1000); // wait after AUTH so the partner can join first

export const options = {
  scenarios: {
    sync: {
      executor: 'constant-vus',
      vus: VUS,
      duration: __ENV.DURATION || '1m',
      gracefulStop: `${Math.ceil(HOLD_S) + 10}s`,
    },
  },
  thresholds: {
    hf_sync_latency: [`p(95)<${envNumber('SYNC_P95_MS', 25)}`, `p(99)<${envNumber('SYNC_P99_MS', 50)}`],
    hf_ack_latency: [`p(99)<${envNumber('ACK_P99_MS', 50)}`],
    hf_ack_ok: ['rate>0.99'],
    hf_connect_ok: ['rate>0.99'],
    checks: ['rate>0.99'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

const syncLatency = new Trend('hf_sync_latency', true); // writer send -> other device receive
const ackLatency = new Trend('hf_ack_latency', true); // send -> STATE_UPDATE_ACK
const ackOk = new Rate('hf_ack_ok'); // every update gets its ACK within ACK_TIMEOUT_MS
const updatesSent = new Counter('hf_updates_sent');
const updatesReceived = new Counter('hf_updates_received');

export function setup() {
  if (VUS % PAIR_SIZE !== 0) console.warn(`VUS=${VUS} is not a multiple of PAIR_SIZE=${PAIR_SIZE}: the last session has fewer devices`);
  // One epoch for the whole run keeps the INCREMENT deltas small (ms since start, not since 1970)
  // so a key's running sum stays a safe integer for hours.
  return { run: randomHex8(), epoch: Date.now() };
}

export default function (data) {
  const vu = exec.vu.idInTest; // 1-based
  const group = Math.floor((vu - 1) / PAIR_SIZE);
  const sessionId = sessionUuid(data.run, group);
  const deviceId = `k6-${data.run}-vu${vu}`;
  const myKey = `lat_vu${vu}`;

  const acks = ackTracker(ackOk, ackLatency);
  const known = Object.create(null); // key -> last value seen (fallback when `delta` is absent)
  let seq = 0;
  let lastAckVersion = 0;
  let stopping = false;

  const startWriting = (dev, heartbeatMs) => {
    dev.every(1000 / RATE, () => {
      if (stopping) return;
      const sentAt = Date.now();
      const correlationId = `${vu}-${++seq}`;
      acks.sent(correlationId);
      updatesSent.add(1);
      dev.send(
        T.STATE_UPDATE,
        { key: myKey, value: sentAt - data.epoch, operation: 'INCREMENT' },
        { session_id: sessionId, device_id: deviceId, correlation_id: correlationId },
      );
    });
    dev.every(heartbeatMs, () => dev.send(T.HEARTBEAT, { client_time: Date.now() }));
    dev.every(1000, () => acks.expire(ACK_TIMEOUT_MS));
  };

  const device = openDevice({
    url: URL,
    token: TOKENS[group % TOKENS.length], // all devices of a session act for the same user
    deviceId,
    sessionId,
    authTimeoutMs: 10000,
    onAuthSuccess: (p, dev) => {
      check(p, { 'AUTH_SUCCESS joins the pair session': (x) => String(x.session_id).toLowerCase() === sessionId });
      dev.after(WARMUP_MS, () => startWriting(dev, Math.max(1000, Number(p.heartbeat_interval_ms) || 25000)));
    },
    onFrame: (msg) => {
      const now = Date.now();
      const p = msg.payload || {};
      switch (msg.type) {
        case T.SNAPSHOT_RESPONSE: {
          const state = p.state_data || {};
          for (const k of Object.keys(state)) known[k] = state[k];
          break;
        }
        case T.STATE_UPDATE: {
          // Another device's update (the writer never gets its own).
          updatesReceived.add(1);
          const prev = known[p.key];
          known[p.key] = p.value;
          if (p.operation !== 'INCREMENT' || typeof p.key !== 'string' || !p.key.startsWith('lat_vu')) break;
          let sentOffset;
          if (typeof p.delta === 'number') sentOffset = p.delta;
          else if (typeof p.value === 'number' && typeof prev === 'number') sentOffset = p.value - prev;
          else break; // first sight of this key without delta: nothing to measure
          syncLatency.add(now - (data.epoch + sentOffset));
          check(p, { 'STATE_UPDATE carries a version': (x) => typeof x.version === 'number' });
          break;
        }
        case T.STATE_UPDATE_ACK:
          if (!acks.acked(msg)) break;
          check(p, { 'ACK version increases': (x) => typeof x.version === 'number' && x.version > lastAckVersion });
          if (typeof p.version === 'number') lastAckVersion = p.version;
          break;
        case T.ERROR:
          acks.errored(msg);
          break;
        default:
          break; // HEARTBEAT_ACK, DEVICE_*, BROADCAST, ...
      }
    },
    onClose: (code, byUs) => {
      acks.failAll();
      // Refused or dropped at once: do not hot-loop against a server that says no.
      if (!byUs) sleep(1);
    },
  });

  // Hold the connection for HOLD_SECONDS, stop writing, let the last ACKs arrive, close; the next
  // iteration reconnects (exercises AUTH + resync).
  device.after(HOLD_S * 1000, () => {
    stopping = true;
    device.after(Math.min(ACK_TIMEOUT_MS, 2000), () => device.close());
  });
}
