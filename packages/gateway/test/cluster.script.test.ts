import { spawn } from 'node:child_process';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { MessageType as T } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, eventually } from '@harmonyflow/testkit';

const SCRIPT = path.resolve(__dirname, '../../../scripts/cluster.mjs');

describe('npm run cluster', () => {
  it('starts Redis, 3 nodes and HAProxy, serves through the balancer, and stops everything on Ctrl-C', async () => {
    const proc = spawn(process.execPath, [SCRIPT], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
    try {
      await eventually(() => out.includes('user-123 token'), 30_000, 100);
      const lb = /load balancer\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1];
      const token = /user-123 token \(24h\): (\S+)/.exec(out)![1];
      const nodeUrls = [...out.matchAll(/node local-\d\s+(http:\/\/\S+)/g)].map((m) => m[1]);
      expect(nodeUrls).toHaveLength(3);
      const sid = randomUUID();
      expect((await api(lb, 'POST', '/session/snapshot', { token, body: { session_id: sid, state_data: { a: 1 } } })).status).toBe(201);
      // Through the balancer and straight to another node: one cluster, one state.
      const a = await connectDevice(lb.replace('http', 'ws') + '/ws');
      await a.auth({ token, device_id: 'phone', session_id: sid });
      const b = await connectDevice(nodeUrls[2].replace('http', 'ws') + '/ws');
      await b.auth({ token, device_id: 'tablet', session_id: sid });
      a.send({ type: T.STATE_UPDATE, payload: { key: 'a', value: 2, operation: 'SET' } });
      expect((await b.next(T.STATE_UPDATE)).payload).toMatchObject({ key: 'a', value: 2, version: 2 });
      await closeAllDevices();
      proc.kill('SIGINT');
      expect(await exited).toBe(0);
      for (const u of [lb, ...nodeUrls]) await expect(fetch(`${u}/health`)).rejects.toThrow();
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
  }, 60_000);
});
