import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { killWithParent } from './orphans';
import { freePort } from './ports';
import { startRedis, type PrivateRedis } from './redis';

export interface PrivateRedisCluster {
  readonly nodes: PrivateRedis[];
  /** `host:port,…` for REDIS_CLUSTER_NODES. */
  readonly spec: string;
  /** The nodes as ioredis Cluster start nodes (RedisConfig `nodes`). */
  readonly hosts: ReadonlyArray<{ host: string; port: number }>;
  stop(): Promise<void>;
}

/** A private 3-master Redis Cluster on free loopback ports (`redis-cli --cluster create`). */
export async function startRedisCluster(masters = 3): Promise<PrivateRedisCluster> {
  const nodes: PrivateRedis[] = [];
  try {
    for (let i = 0; i < masters; i++) {
      // The cluster bus port is chosen too (by default it is port + 10000, which nobody checked).
      // nodes.conf goes in the node's own directory (`--dir`, removed when it stops).
      nodes.push(await startRedis(async () => [
        '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000', '--cluster-port', String(await freePort()),
      ]));
    }
    const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
    const r = spawnSync('redis-cli', ['--cluster', 'create', ...addrs, '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8', timeout: 30_000 });
    if (r.status !== 0) throw new Error(`redis-cli --cluster create failed: ${r.stdout}\n${r.stderr}`);
    const deadline = Date.now() + 15_000;
    for (const n of nodes) {
      for (;;) {
        const info = spawnSync('redis-cli', ['-p', String(n.port), 'cluster', 'info'], { encoding: 'utf8' }).stdout;
        if (info.includes('cluster_state:ok')) break;
        if (Date.now() > deadline) throw new Error(`cluster not ok on ${n.port}: ${info}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    return {
      nodes,
      spec: addrs.join(','),
      hosts: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
      stop: async () => {
        await Promise.all(nodes.map((n) => n.stop()));
      },
    };
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw err;
  }
}

/**
 * Registers beforeAll/afterAll hooks that start one private Redis Cluster for the file (or
 * describe block) and stop it; the getter is valid inside tests. Starting one costs ~2 s, so a
 * file shares it between its suites (each with its own key prefix).
 */
export function useRedisCluster(masters = 3): () => PrivateRedisCluster {
  let cluster: PrivateRedisCluster | null = null;
  beforeAll(async () => {
    cluster = await startRedisCluster(masters);
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error('useRedisCluster(): the cluster is only available inside tests');
    return cluster;
  };
}

export interface PrivateHaproxy {
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  stop(): Promise<void>;
}

const TEMPLATE = path.resolve(__dirname, '../../../deploy/haproxy/haproxy.cfg.template');

/** HAProxy from `deploy/haproxy/haproxy.cfg.template` in front of the given gateway ports. */
export async function startHaproxy(backendPorts: readonly number[], opts: { port?: number } = {}): Promise<PrivateHaproxy> {
  const port = opts.port ?? (await freePort());
  const stats = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-haproxy-'));
  const servers = backendPorts.map((p, i) => `    server node${i + 1} 127.0.0.1:${p} check inter 500ms fall 2 rise 1`).join('\n');
  const cfg = readFileSync(TEMPLATE, 'utf8')
    .replaceAll('{{FRONTEND_PORT}}', String(port))
    .replaceAll('{{STATS_PORT}}', String(stats))
    .replaceAll('{{SERVERS}}', servers);
  const file = path.join(dir, 'haproxy.cfg');
  writeFileSync(file, cfg);
  const proc: ChildProcess = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  killWithParent(proc, 'haproxy', dir);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`haproxy exited: ${err}`);
    try {
      if ((await fetch(`${url}/health`, { headers: { connection: 'close' } })).ok) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`haproxy did not come up: ${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    url,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    stop: async () => {
      if (proc.exitCode === null) {
        await new Promise<void>((resolve) => {
          proc.once('exit', () => resolve());
          proc.kill('SIGKILL');
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function haproxyAvailable(): boolean {
  return spawnSync('haproxy', ['-v']).status === 0;
}
