import { spawnSync } from 'node:child_process';
import { spawnNode, useRedis, type NodeProcess } from '@harmonyflow/testkit';

const HAVE_PROMTOOL = spawnSync('promtool', ['--version']).status === 0;
if (!HAVE_PROMTOOL) console.warn('SKIPPED metrics.promtool: promtool is not installed (Debian: apt-get install prometheus)');
const describeIf = HAVE_PROMTOOL ? describe : describe.skip;

async function scrape(n: NodeProcess): Promise<string> {
  const r = await fetch(`${n.url}/metrics`);
  expect(r.status).toBe(200);
  return r.text();
}

function promtoolCheck(text: string): { status: number | null; output: string } {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describeIf('live /metrics passes `promtool check metrics`', () => {
  const redis = useRedis();
  const procs: NodeProcess[] = [];
  afterAll(async () => {
    for (const p of procs) {
      p.kill();
      await p.exited;
    }
  });

  it('embedded store: clean, with hf_build_info and no Redis connection series', async () => {
    const n = await spawnNode({ LOG_LEVEL: 'silent' });
    procs.push(n);
    const text = await scrape(n);
    expect(promtoolCheck(text)).toEqual({ status: 0, output: '' });
    expect(text).toMatch(new RegExp(`^hf_build_info\\{version="\\d+\\.\\d+\\.\\d+",node_version="${process.version.replace(/\./g, '\\.')}",uws_native="true",uws_build="[^"]+"\\} 1$`, 'm'));
    expect(text).not.toMatch(/^hf_redis_connected\{/m);
    expect(text).not.toMatch(/^# TYPE hf_\w+_total gauge$/m);
  });

  it('Redis store: clean, with hf_redis_connected 1 for both connections', async () => {
    const n = await spawnNode({ LOG_LEVEL: 'silent', REDIS_URL: redis().url });
    procs.push(n);
    const text = await scrape(n);
    expect(promtoolCheck(text)).toEqual({ status: 0, output: '' });
    expect(text).toMatch(/^hf_redis_connected\{role="command"\} 1$/m);
    expect(text).toMatch(/^hf_redis_connected\{role="subscriber"\} 1$/m);
  });

  it('the check is real: promtool rejects a gauge named *_total', () => {
    const bad = '# HELP hf_x_total x\n# TYPE hf_x_total gauge\nhf_x_total 1\n';
    expect(promtoolCheck(bad).status).not.toBe(0);
  });
});
