// Runs a gateway in this process (started with --expose-gc) on the given Redis, lets a child
// process open N authenticated idle WebSockets, and reports retained JS heap per connection after
// forced GCs. Prints one JSON line.
const { fork } = require('node:child_process');
const path = require('node:path');
const { createNode, loadConfig } = require('../../../packages/gateway/dist');

const [redisUrl, countArg] = process.argv.slice(2);
const N = Number(countArg);

async function settle() {
  for (let i = 0; i < 5; i++) {
    global.gc();
    await new Promise((r) => setTimeout(r, 200));
  }
}

function clients(port, token, n, tag) {
  const child = fork(path.join(__dirname, 'heap-clients.cjs'), [String(port), token, String(n), tag]);
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`client process exited ${code}`)));
  });
}

(async () => {
  const node = await createNode(loadConfig({
    HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', REDIS_URL: redisUrl, REDIS_PREFIX: 'heap:',
    JWT_SECRET: 'h'.repeat(40), JWT_REFRESH_SECRET: 'r'.repeat(40), WS_RATE_BURST: '1000',
    // One user owns every measured session: no per-user quota in this probe.
    MAX_SESSIONS_PER_USER: '0',
  }));
  await node.listen();
  const token = await node.tokens.signAccess('heap-user', 'user', 3600);
  const warm = await clients(node.port, token, 200, 'w'); // JIT, caches, pools
  warm.kill();
  await new Promise((r) => setTimeout(r, 1000));
  await settle();
  const before = process.memoryUsage();
  const child = await clients(node.port, token, N, 'm');
  await new Promise((r) => setTimeout(r, 1500));
  await settle();
  const after = process.memoryUsage();
  process.stdout.write(JSON.stringify({
    connections: node.ws.connectionCount,
    heap_per_conn: Math.round((after.heapUsed - before.heapUsed) / N),
    rss_per_conn: Math.round((after.rss - before.rss) / N),
  }) + '\n');
  child.kill();
  await node.shutdown();
  process.exit(0);
})().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + '\n');
  process.exit(1);
});
