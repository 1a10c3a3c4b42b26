import { spawn } from 'node:child_process';
import path from 'node:path';
import { eventually } from '@harmonyflow/testkit';

// The test helpers' own promise: a test process that dies without cleaning up (SIGKILL, as jest
// does to a worker past its timeout) leaves no redis-server or gateway behind.

const TESTKIT = path.resolve(__dirname, '../../testkit/dist/index.js');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs `body` in a child Node process that prints the pids it wants watched, then hangs. */
function childPrinting(body: string): Promise<{ pids: number[]; kill(): void }> {
  const script = `const t = require(${JSON.stringify(TESTKIT)}); (async () => { ${body} })().catch((e) => { console.error(e); process.exit(1); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /PIDS (.*)\n/.exec(out);
      if (m) resolve({ pids: m[1].split(',').map(Number), kill: () => child.kill('SIGKILL') });
    });
    child.once('exit', (code) => reject(new Error(`child exited early (${code}): ${out}`)));
  });
}

describe('test helpers clean up after a killed test process', () => {
  it('a private redis-server dies with the process that started it, even on SIGKILL', async () => {
    const c = await childPrinting(`
      const r = await t.startRedis();
      const pid = Number(require('node:child_process').execSync('redis-cli -p ' + r.port + ' info server').toString().match(/process_id:(\\d+)/)[1]);
      console.log('PIDS ' + pid);
      setInterval(() => {}, 1000);
    `);
    const [redisPid] = c.pids;
    expect(alive(redisPid)).toBe(true);
    c.kill();
    await eventually(() => !alive(redisPid), 5000, 50);
  }, 20_000);

  it('a gateway process dies with the process that spawned it, even on SIGKILL', async () => {
    const c = await childPrinting(`
      const n = await t.spawnNode({});
      console.log('PIDS ' + n.proc.pid);
      setInterval(() => {}, 1000);
    `);
    const [gatewayPid] = c.pids;
    expect(alive(gatewayPid)).toBe(true);
    c.kill();
    await eventually(() => !alive(gatewayPid), 5000, 50);
  }, 30_000);
});
