// The example page: one SessionClient showing a session's live state and devices. Parameters come
// from the query string: ws (gateway WebSocket URL), token, session, device (optional).
import { SessionClient } from '@harmonyflow/client';

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

function deviceId() {
  // Stable across reloads of this tab, so the tab finds its own queued writes again.
  const given = params.get('device');
  if (given) return given;
  let id = sessionStorage.getItem('hf-device');
  if (!id) sessionStorage.setItem('hf-device', (id = `web-${Math.random().toString(36).slice(2, 10)}`));
  return id;
}

const showError = (e) => ($('error').textContent = e.code ? `${e.code}: ${e.message}` : e.message);

function createClient() {
  const token = params.get('token');
  if (!token) throw new Error('No token: open this page with ?token=… in the URL (`npm run example` prints a ready one).');
  return new SessionClient({
    url: params.get('ws') ?? `ws://${location.hostname}:8080/ws`,
    token,
    sessionId: params.get('session') ?? undefined,
    deviceId: deviceId(),
    deviceType: 'web',
    deviceName: navigator.userAgent.slice(0, 64),
    storage: localStorage, // queued writes survive reloads and browser restarts
    reconnect: { maxDelayMs: 2000 },
  });
}

function run(client) {
  window.hf = client; // for the console (and the end-to-end test)

  function renderDevices() {
    const ul = $('devices');
    ul.replaceChildren(...client.deviceList.map((d) => {
      const li = document.createElement('li');
      li.textContent = `${d.device_id} (${d.device_type ?? 'device'}) — ${d.status}`;
      if (d.status !== 'online') li.className = 'offline';
      return li;
    }));
  }

  client.on('status', (s) => {
    $('status').textContent = s;
    $('status').dataset.status = s;
  });
  client.on('state', (state, version) => {
    $('state').textContent = JSON.stringify(state, null, 2);
    $('count').textContent = String(state.count ?? 0);
    $('version').textContent = String(version);
  });
  client.on('queue', (n) => ($('pending').textContent = String(n)));
  client.on('connected', (info) => {
    $('session').textContent = info.sessionId;
    renderDevices();
  });
  client.on('device', renderDevices);
  client.on('error', showError);

  $('inc').addEventListener('click', () => {
    client.increment('count').catch(showError);
  });

  client.connect().catch(showError);
}

let client = null;
try {
  client = createClient();
} catch (e) {
  // A missing token or a bad ws URL: say so on the page instead of leaving it inert.
  showError(e);
  $('inc').disabled = true;
}
if (client) run(client);
