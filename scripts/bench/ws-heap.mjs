// Retained JS heap per idle authenticated WebSocket, measured with forced GCs (the gateway runs
// in-process under --expose-gc in a probe; clients in a child process). Complements ws-connect,
// whose heap figure includes garbage not yet collected.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const name = 'ws-heap';
export const description = 'retained heap per idle authenticated connection (forced GC), Redis store';

const here = path.dirname(fileURLToPath(import.meta.url));

export async function run(ctx) {
  const redis = await ctx.startRedis();
  const n = ctx.quick ? 1000 : 5000;
  const out = await new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['--expose-gc', path.join(here, 'probes/heap-probe.cjs'), redis.url, String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    p.stdout.on('data', (d) => (text += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 120_000);
    ctx.onCleanup?.(() => p.kill('SIGKILL'));
    p.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(text.trim().split('\n').pop()));
      else reject(new Error(`heap probe exited ${code}`));
    });
  });
  return [
    ctx.row('connections', out.connections, 'count'),
    ctx.row('retained_heap_per_conn', out.heap_per_conn, 'B'),
    ctx.row('rss_per_conn', out.rss_per_conn, 'B'),
  ];
}
