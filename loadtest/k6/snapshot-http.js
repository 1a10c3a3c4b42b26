// HarmonyFlow: snapshot store/read latency over HTTP.
//
// Open model (constant arrival rate): each iteration writes its VU's session with
// POST /session/snapshot (unconditional write: the server bumps the version) and reads it back
// with GET /session/:uuid, checking the version it just wrote; every READS_PER_WRITE-th
// iteration also revalidates with If-None-Match and expects 304.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e TOKEN="$(npm run -s token -- --sub load-1 --ttl 3600)" loadtest/k6/snapshot-http.js
//   k6 run -e RATE=500 -e DURATION=5m -e STATE_BYTES=4096 -e TOKENS_FILE=$PWD/tokens.txt loadtest/k6/snapshot-http.js
import http from 'k6/http';
import { check } from 'k6';
import exec from 'k6/execution';
import { Counter } from 'k6/metrics';
import { baseUrl, envNumber, loadTokens, randomHex8, sessionUuid } from './lib.js';

const TOKENS = loadTokens();
const BASE = baseUrl();
const RATE = envNumber('RATE', 50); // iterations (write + read) per second
const STATE_BYTES = Math.round(envNumber('STATE_BYTES', 512)); // size of the filler in state_data
const REVALIDATE_EVERY = Math.round(envNumber('REVALIDATE_EVERY', 5));
const P99_MS = envNumber('P99_MS', 50);

export const options = {
  scenarios: {
    snapshots: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '1m',
      preAllocatedVUs: Math.round(envNumber('PRE_VUS', Math.max(10, Math.ceil(RATE / 10)))),
      maxVUs: Math.round(envNumber('MAX_VUS', Math.max(50, Math.ceil(RATE)))),
    },
  },
  thresholds: {
    'http_req_duration{name:POST /session/snapshot}': [`p(99)<${P99_MS}`],
    'http_req_duration{name:GET /session/:uuid}': [`p(99)<${P99_MS}`],
    http_req_failed: ['rate<0.01'],
    checks: ['rate>0.99'],
    dropped_iterations: ['count<1'],
  },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
};

const statusCodes = new Counter('hf_http_status'); // tagged with status, to see 409/413/503 at a glance

const FILLER = 'x'.repeat(STATE_BYTES);

function headersFor(token, extra) {
  return Object.assign({ Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' }, extra || {});
}

export function setup() {
  const run = randomHex8();
  // Fail fast on a wrong URL or token instead of producing a minute of 401s.
  const probe = http.get(`${BASE}/session/${sessionUuid(run, 0xffffff)}`, { headers: headersFor(TOKENS[0]), tags: { name: 'setup probe' } });
  if (probe.status === 0) exec.test.abort(`cannot reach ${BASE}: ${probe.error}`);
  if (probe.status === 401) exec.test.abort('the token is rejected (401): mint it with the server\'s JWT_SECRET (npm run token -- --sub load-1 --ttl 3600)');
  return { run };
}

export default function (data) {
  const vu = exec.vu.idInTest;
  const token = TOKENS[(vu - 1) % TOKENS.length];
  const sessionId = sessionUuid(data.run, vu);
  const iter = exec.vu.iterationInScenario;

  const body = JSON.stringify({
    session_id: sessionId,
    device_id: `k6-${data.run}-vu${vu}`,
    app_version: 'k6',
    state_data: { counter: iter, written_at: Date.now(), filler: FILLER },
  });
  const w = http.post(`${BASE}/session/snapshot`, body, { headers: headersFor(token), tags: { name: 'POST /session/snapshot' } });
  statusCodes.add(1, { status: String(w.status), name: 'POST /session/snapshot' });
  let written = null;
  try {
    written = w.json();
  } catch (e) {
    written = null;
  }
  const wrote = check(w, {
    'snapshot written (200/201)': (r) => r.status === 200 || r.status === 201,
    'written snapshot has a version': () => written !== null && typeof written.version === 'number',
  });
  if (!wrote) return;

  const r = http.get(`${BASE}/session/${sessionId}`, { headers: headersFor(token), tags: { name: 'GET /session/:uuid' } });
  statusCodes.add(1, { status: String(r.status), name: 'GET /session/:uuid' });
  let read = null;
  try {
    read = r.json();
  } catch (e) {
    read = null;
  }
  check(r, {
    'snapshot read (200)': (x) => x.status === 200,
    'read returns the version just written': () => read !== null && read.version >= written.version,
    'read returns the state just written': () => read !== null && read.state_data && read.state_data.counter === iter,
  });

  if (REVALIDATE_EVERY > 0 && iter % REVALIDATE_EVERY === 0 && r.status === 200) {
    const etag = r.headers.Etag || r.headers.ETag || `"${read ? read.version : written.version}"`;
    const c = http.get(`${BASE}/session/${sessionId}`, {
      headers: headersFor(token, { 'If-None-Match': etag }),
      tags: { name: 'GET /session/:uuid (If-None-Match)' },
    });
    statusCodes.add(1, { status: String(c.status), name: 'GET /session/:uuid (If-None-Match)' });
    check(c, { 'unchanged snapshot revalidates to 304': (x) => x.status === 304 });
  }
}
