// N WebSockets (2 devices per session), each AUTHed; reports once all got their snapshot, then idles.
const WebSocket = require('ws');
const [port, token, countArg, tag] = process.argv.slice(2);
const N = Number(countArg);
let opened = 0;
let ready = 0;
const sessionId = (i) => `00000000-0000-4000-8000-${(tag === 'w' ? 'a' : 'b') + i.toString(16).padStart(11, '0')}`;
function more() {
  while (opened < N && opened - ready < 100) {
    const k = opened++;
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, 'harmonyflow.v1.json');
    ws.on('open', () => ws.send(JSON.stringify({ type: 7, timestamp: Date.now(), payload: { token, device_id: `d${k % 2}`, session_id: sessionId(k >> 1) } })));
    ws.on('message', (d) => {
      if (JSON.parse(d).type === 4 && ++ready === N) process.send('ready');
      else more();
    });
    ws.on('error', (e) => { process.stderr.write(String(e) + '\n'); process.exit(1); });
  }
}
more();
