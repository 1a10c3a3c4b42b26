import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
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

/**
 * Runs `body` in a child Node process (it must set `pid` to the process to watch), checks that
 * process is alive, SIGKILLs the child and expects the watched process to be gone soon after.
 * `printed` gets what the child printed up to then.
 */
async function expectGoneWithKilledParent(body: string, printed: (out: string) => void = () => undefined): Promise<number> {
  const script = `const t = require(${JSON.stringify(TESTKIT)}); (async () => { let pid; ${body}; console.log('PID ' + pid); setInterval(() => {}, 1000); })()` +
    `.catch((e) => { console.error(e); process.exit(1); });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /PID (\d+)\n/.exec(out);
      if (m) {
        printed(out);
        resolve(Number(m[1]));
      }
    });
    child.once('exit', (code) => reject(new Error(`child exited early (${code}): ${out}`)));
  });
  expect(alive(pid)).toBe(true);
  child.kill('SIGKILL');
  await eventually(() => !alive(pid), 5000, 50);
  return pid;
}

describe('test helpers clean up after a killed test process', () => {
  it('a private redis-server dies with the process that started it, even on SIGKILL, and its directory goes too', async () => {
    let dir = '';
    const pid = await expectGoneWithKilledParent(`
      const r = await t.startRedis();
      pid = Number(require('node:child_process').execSync('redis-cli -p ' + r.port + ' info server').toString().match(/process_id:(\\d+)/)[1]);
      console.log('DIR ' + require('node:child_process').execSync('redis-cli -p ' + r.port + ' config get dir').toString().split('\\n')[1]);
    `, (out) => (dir = /DIR (.+)\n/.exec(out)?.[1] ?? ''));
    expect(pid).toBeGreaterThan(0);
    expect(dir).toMatch(/hf-redis-/);
    await eventually(() => !existsSync(dir), 5000, 50);
  }, 20_000);

  it('a gateway process dies with the process that spawned it, even on SIGKILL', async () => {
    await expectGoneWithKilledParent(`
      const n = await t.spawnNode({});
      pid = n.proc.pid;
    `);
  }, 30_000);
});
