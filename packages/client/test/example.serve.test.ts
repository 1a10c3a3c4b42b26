import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// examples/web/serve.mjs waiting for the gateway it started: a /health that answers non-OK
// (something else on the port, a gateway stuck starting) is polled at a pace, and given up on.
const repo = path.resolve(__dirname, '../../..');
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'hf-serve-'));
  // Preloaded into serve.mjs (and the gateway it spawns, which never fetches /health): every
  // /health answers 503 and leaves a mark on stderr.
  writeFileSync(path.join(dir, 'unhealthy.cjs'), `
    const real = globalThis.fetch;
    globalThis.fetch = async (url, init) => {
      if (String(url).endsWith('/health')) {
        await new Promise((r) => setImmediate(r)); // yields to I/O as a real request does
        process.stderr.write('health-poll\\n');
        return new Response('{}', { status: 503 });
      }
      return real(url, init);
    };
  `);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

it('a /health answering 503 is polled about every 100 ms, and the script gives up with an error', async () => {
  const child = spawn(process.execPath, [path.join(repo, 'examples/web/serve.mjs'), '--port', '0'], {
    cwd: repo, stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: `--require ${path.join(dir, 'unhealthy.cjs')}` },
  });
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const polls = () => err.split('\n').filter((l) => l === 'health-poll').length;
  try {
    await new Promise((r) => setTimeout(r, 2000));
    expect(polls()).toBeGreaterThan(0);
    expect(polls()).toBeLessThanOrEqual(25); // a hot loop makes thousands
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise((r) => (timer = setTimeout(() => r('still running'), 20_000)))]);
    clearTimeout(timer);
    expect(code).not.toBe('still running');
    expect(code).not.toBe(0);
    expect(err).toMatch(/did not become healthy.*HTTP 503/);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  }
}, 40_000);
