// One HarmonyFlow device over k6/websockets (the WebSockets-standard API with k6's global event
// loop): opens the socket, authenticates, parses frames, counts errors and closes, and owns its
// timers. A VU's iteration lasts until its socket is closed and its timers are cleared, so every
// timer goes through `every`/`after` and is cleared when the socket closes.
import { WebSocket } from 'k6/websockets';
import { setInterval, clearInterval, setTimeout, clearTimeout } from 'k6/timers';
import { Counter, Rate, Trend } from 'k6/metrics';
import { T } from './lib.js';

// Custom metrics must be created in the init context: importing this module does that.
export const connectOk = new Rate('hf_connect_ok'); // socket opened and AUTH_SUCCESS within the auth timeout
export const authLatency = new Trend('hf_auth_latency', true); // socket created -> AUTH_SUCCESS
export const errorFrames = new Counter('hf_error_frames'); // ERROR frames, tagged with their code
export const serverCloses = new Counter('hf_server_closes'); // closes we did not ask for, tagged with the code

/** Close code from a close event, or from the error text a k6 build reports instead ("websocket: close 4000 …"). */
function closeCodeOf(event, lastError) {
  if (event && typeof event.code === 'number' && event.code > 0) return String(event.code);
  const m = /close (\d{4})/.exec(lastError || '');
  return m ? m[1] : 'unknown';
}

/**
 * Opens a device connection. `opts`: url, token, deviceId, sessionId, authTimeoutMs, tags, and
 * callbacks onAuthSuccess(payload, device), onFrame(msg, device) for every other frame,
 * onClose(code, byUs). Returns the device: send(type, payload, extra), every(ms, fn),
 * after(ms, fn), close().
 */
export function openDevice(opts) {
  const timers = [];
  const state = { authed: false, counted: false, byUs: false, lastError: '' };
  const startedAt = Date.now();
  const ws = new WebSocket(opts.url, null, {
    // The JSON subprotocol is also the server's default; say it explicitly anyway.
    headers: { 'Sec-WebSocket-Protocol': 'harmonyflow.v1.json' },
    tags: Object.assign({ name: 'ws /ws' }, opts.tags || {}),
  });

  const countConnect = (ok) => {
    if (state.counted) return;
    state.counted = true;
    connectOk.add(ok);
  };

  const device = {
    send(type, payload, extra) {
      if (ws.readyState !== 1) return false;
      ws.send(JSON.stringify(Object.assign({ type, timestamp: Date.now(), payload }, extra || {})));
      return true;
    },
    every(ms, fn) {
      timers.push({ id: setInterval(fn, ms), interval: true });
    },
    after(ms, fn) {
      timers.push({ id: setTimeout(fn, ms), interval: false });
    },
    close() {
      state.byUs = true;
      if (ws.readyState <= 1) ws.close();
    },
  };

  ws.onopen = () => {
    device.send(T.AUTH, {
      token: opts.token, device_id: opts.deviceId, device_type: 'k6', device_name: opts.deviceId, session_id: opts.sessionId,
    });
    device.after(opts.authTimeoutMs, () => {
      if (state.authed) return;
      countConnect(false);
      console.error(`${opts.deviceId}: no AUTH_SUCCESS within ${opts.authTimeoutMs} ms`);
      device.close();
    });
  };

  ws.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (e) {
      errorFrames.add(1, { code: 'undecodable_frame' });
      return;
    }
    const p = msg.payload || {};
    switch (msg.type) {
      case T.AUTH_SUCCESS:
        state.authed = true;
        countConnect(true);
        authLatency.add(Date.now() - startedAt);
        if (opts.onAuthSuccess) opts.onAuthSuccess(p, device);
        return;
      case T.AUTH_FAILURE:
        countConnect(false);
        console.error(`${opts.deviceId}: AUTH_FAILURE ${p.code}: ${p.message}`);
        return;
      case T.ERROR:
        errorFrames.add(1, { code: String(p.code) });
        break; // the script may still want it (to fail a pending write)
      case T.RECONNECT:
        // The node is draining: leave now; the VU's next iteration reconnects, as a real client would.
        device.close();
        return;
      default:
        break;
    }
    if (opts.onFrame) opts.onFrame(msg, device);
  };

  ws.onerror = (event) => {
    state.lastError = event && event.error ? String(event.error) : 'error';
  };

  ws.onclose = (event) => {
    for (const t of timers) (t.interval ? clearInterval : clearTimeout)(t.id);
    timers.length = 0;
    countConnect(false); // no-op when AUTH_SUCCESS was already counted
    const code = closeCodeOf(event, state.lastError);
    if (!state.byUs) serverCloses.add(1, { code });
    if (opts.onClose) opts.onClose(code, state.byUs);
  };

  return device;
}

/** The correlation id an ACK or ERROR answers: the payload's, else the envelope's. */
export function correlationOf(msg) {
  const p = msg.payload || {};
  return p.correlation_id !== undefined ? p.correlation_id : msg.correlation_id;
}

/**
 * Writes awaiting their STATE_UPDATE_ACK. Each one ends exactly once in `ackOk`: true when
 * acknowledged (its latency goes to `ackLatency`), false when answered by an ERROR, older than
 * `expire(ms)` allows, or still pending when its socket closes (`failAll`).
 */
export function ackTracker(ackOk, ackLatency) {
  const pending = new Map(); // correlation_id -> send time (ms)
  const fail = (cid) => {
    if (pending.delete(cid)) ackOk.add(false);
  };
  return {
    sent(cid) {
      pending.set(cid, Date.now());
    },
    /** True when `msg` acknowledged one of ours. */
    acked(msg) {
      const cid = correlationOf(msg);
      const sentAt = pending.get(cid);
      if (sentAt === undefined) return false; // not ours, or already timed out
      pending.delete(cid);
      ackOk.add(true);
      ackLatency.add(Date.now() - sentAt);
      return true;
    },
    errored(msg) {
      fail(correlationOf(msg));
    },
    expire(olderThanMs) {
      const now = Date.now();
      for (const [cid, sentAt] of pending) if (now - sentAt > olderThanMs) fail(cid);
    },
    failAll() {
      for (const cid of [...pending.keys()]) fail(cid);
    },
  };
}
