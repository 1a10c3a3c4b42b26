// HarmonyFlow: 10k-connection soak over WebSocket (k6/websockets).
//
// VUs ramp up in stages (never all at once) to TARGET_VUS connections, each VU holding ONE
// authenticated connection for the whole test: idle but for HEARTBEATs at the server's advertised
// interval, plus a trickle of writes across all connections (WRITE_RATE per second in total; 0
// makes a pure idle soak). DEVICES_PER_SESSION devices share each session, so every write fans out.
// A connection the server closes (drain: RECONNECT + 1012) is reopened by the VU's next iteration.
//
//   k6 run -e TOKENS_FILE=$PWD/tokens.txt -e BASE_URL=http://127.0.0.1:8080 loadtest/k6/soak-10k.js
//   k6 run -e TOKEN=... -e TARGET_VUS=2000 -e RAMP=2m -e HOLD=10m -e WRITE_RATE=0 loadtest/k6/soak-10k.js
//
// Needs `ulimit -n` above TARGET_VUS on the k6 machine (and on HAProxy/the gateways), and roughly
// 1-2 GB of memory per 1000 VUs for k6 itself: split very large runs over several k6 instances.
import { check } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import exec from 'k6/execution';
import { envDuration, envNonNegative, envNumber, loadTokens, randomHex8, sessionUuid, wsUrl, T } from './lib.js';
import { ackTracker, openDevice } from './device.js';

const TOKENS = loadTokens();
const URL = wsUrl();
const TARGET_VUS = Math.round(envNumber('TARGET_VUS', 10000));
const RAMP = envDuration('RAMP', '10m'); // time to reach TARGET_VUS (about 17 new connections/s at the defaults)
const HOLD = envDuration('HOLD', '30m'); // idle hold at TARGET_VUS
const RAMP_DOWN = envDuration('RAMP_DOWN', '2m');
const WRITE_RATE = envNonNegative('WRITE_RATE', 10); // STATE_UPDATEs per second across all connections
const DEVICES_PER_SESSION = Math.max(1, Math.round(envNumber('DEVICES_PER_SESSION', 2)));
const ACK_TIMEOUT_MS = envNumber('ACK_TIMEOUT_MS', 5000);
const AUTH_TIMEOUT_MS = envNumber('AUTH_TIMEOUT_MS', 10000);
const MAX_ERROR_FRAMES = envNonNegative('MAX_ERROR_FRAMES', 0);

const thresholds = {
  // Connection success: socket opened and AUTH_SUCCESS within AUTH_TIMEOUT_MS.
  hf_connect_ok: [`rate>${envNumber('CONNECT_OK_RATE', 0.999)}`],
  hf_auth_latency: [`p(99)<${envNumber('AUTH_P99_MS', 1000)}`],
  // ERROR frames of any code (rate_limited, store_unavailable, internal, ...).
  hf_error_frames: [`count<=${MAX_ERROR_FRAMES}`],
  hf_heartbeat_ok: ['rate>0.999'],
};
if (WRITE_RATE > 0) {
  // Only with writes: a threshold on a metric without samples would fail an idle soak.
  thresholds.hf_ack_latency = [`p(99)<${envNumber('ACK_P99_MS', 100)}`];
  thresholds.hf_ack_ok = ['rate>0.999'];
}

export const options = {
  scenarios: {
    soak: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: RAMP, target: TARGET_VUS },
        { duration: HOLD, target: TARGET_VUS },
        { duration: RAMP_DOWN, target: 0 },
      ],
      // VUs being removed get this long to close their socket cleanly.
      gracefulRampDown: '30s',
      gracefulStop: '30s',
    },
  },
  thresholds,
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

const ackLatency = new Trend('hf_ack_latency', true); // STATE_UPDATE -> STATE_UPDATE_ACK
const ackOk = new Rate('hf_ack_ok'); // each write acknowledged within ACK_TIMEOUT_MS
const heartbeatOk = new Rate('hf_heartbeat_ok'); // each HEARTBEAT answered before the next one
const heartbeatRtt = new Trend('hf_heartbeat_rtt', true);
const updatesReceived = new Counter('hf_updates_received');

export function setup() {
  return { run: randomHex8() };
}

export default function (data) {
  const vu = exec.vu.idInTest;
  const group = Math.floor((vu - 1) / DEVICES_PER_SESSION);
  const sessionId = sessionUuid(data.run, group);
  const deviceId = `k6-soak-${data.run}-vu${vu}`;
  const acks = ackTracker(ackOk, ackLatency);
  let heartbeatOutstanding = false;
  let seq = 0;

  openDevice({
    url: URL,
    token: TOKENS[group % TOKENS.length],
    deviceId,
    sessionId,
    authTimeoutMs: AUTH_TIMEOUT_MS,
    onAuthSuccess: (p, dev) => {
      check(p, { 'AUTH_SUCCESS for the soak session': (x) => String(x.session_id).toLowerCase() === sessionId });
      const heartbeatMs = Math.max(1000, Number(p.heartbeat_interval_ms) || 25000);
      dev.every(heartbeatMs, () => {
        if (heartbeatOutstanding) heartbeatOk.add(false);
        heartbeatOutstanding = true;
        dev.send(T.HEARTBEAT, { client_time: Date.now() });
      });
      if (WRITE_RATE > 0) {
        // WRITE_RATE in total: each of TARGET_VUS connections writes every TARGET_VUS / WRITE_RATE
        // seconds, starting at a random offset so the writes do not come in waves.
        const everyMs = Math.max(10, (TARGET_VUS / WRITE_RATE) * 1000);
        dev.after(Math.random() * everyMs, () => {
          const write = () => {
            const cid = `${vu}-${++seq}`;
            acks.sent(cid);
            dev.send(T.STATE_UPDATE, { key: `soak_vu${vu}`, value: 1, operation: 'INCREMENT' }, { session_id: sessionId, device_id: deviceId, correlation_id: cid });
          };
          write();
          dev.every(everyMs, write);
        });
        dev.every(1000, () => acks.expire(ACK_TIMEOUT_MS));
      }
    },
    onFrame: (msg) => {
      const p = msg.payload || {};
      switch (msg.type) {
        case T.HEARTBEAT_ACK:
          if (heartbeatOutstanding) heartbeatOk.add(true);
          heartbeatOutstanding = false;
          if (typeof p.client_time === 'number') heartbeatRtt.add(Date.now() - p.client_time);
          break;
        case T.STATE_UPDATE_ACK:
          acks.acked(msg);
          break;
        case T.STATE_UPDATE:
          updatesReceived.add(1);
          break;
        case T.ERROR:
          acks.errored(msg);
          break;
        default:
          break; // SNAPSHOT_RESPONSE, DEVICE_*, BROADCAST, ADMIN_UPDATE
      }
    },
    onClose: () => acks.failAll(),
  });
}
