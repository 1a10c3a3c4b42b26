import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './ports';

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** Stops the server (SIGKILL: nothing is saved, like a crash). */
  kill(): Promise<void>;
  /** Starts it again on the same port, empty. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

// Last line of defence: a crashed test run must not leave redis-server processes behind.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.write('PING\r\n');
        s.once('data', (d) => {
          s.destroy();
          // -NOAUTH: up, and started with --requirepass.
          if (/^(\+PONG|-NOAUTH)/.test(d.toString())) resolve();
          else retry();
        });
      });
      s.once('error', () => {
        s.destroy();
        retry();
      });
    };
    const retry = () => (Date.now() > deadline ? reject(new Error(`redis on ${port} did not start`)) : setTimeout(attempt, 25));
    attempt();
  });
}

/**
 * A private `redis-server` on a free loopback port (never the shared one on 6379).
 * `extraArgs` e.g. ['--cluster-enabled', 'yes']. The caller stops it; `useRedis` does that for you.
 */
export async function startRedis(extraArgs: string[] = []): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-redis-'));
  let proc: ChildProcess | null = null;
  const start = async () => {
    const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...extraArgs], { stdio: 'ignore' });
    live.add(p);
    p.once('exit', () => live.delete(p));
    proc = p;
    await waitForPort(port, 10_000);
  };
  const kill = async () => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  };
  await start();
  const handle: PrivateRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    restart: async () => {
      await kill();
      await start();
    },
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return handle;
}

/**
 * Registers beforeAll/afterAll hooks (call it at describe or file level) that start a private Redis
 * and stop it; the returned getter is valid inside tests.
 */
export function useRedis(extraArgs: string[] = []): () => PrivateRedis {
  let redis: PrivateRedis | null = null;
  beforeAll(async () => {
    redis = await startRedis(extraArgs);
  });
  afterAll(async () => {
    await redis?.stop();
  });
  return () => {
    if (!redis) throw new Error('useRedis(): Redis is only available inside tests');
    return redis;
  };
}

export function redisServerAvailable(): boolean {
  return spawnSync('redis-server', ['--version']).status === 0;
}
