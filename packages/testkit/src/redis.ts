import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { killWithParent } from './orphans';
import { freePort } from './ports';

export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  /** The running server's process id (a new one after `restart`), for CPU read from /proc. */
  readonly pid: number;
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

function waitForPort(port: number, timeoutMs: number, proc: ChildProcess): Promise<void> {
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
    const retry = () => {
      if (proc.exitCode !== null || proc.signalCode !== null) reject(new Error(`redis-server on ${port} exited (${proc.exitCode ?? proc.signalCode})`));
      else if (Date.now() > deadline) reject(new Error(`redis on ${port} did not start`));
      else setTimeout(attempt, 25);
    };
    attempt();
  });
}

/**
 * A private `redis-server` on a free loopback port (never the shared one on 6379).
 * `extraArgs` e.g. ['--cluster-enabled', 'yes'], or a function giving them afresh for each start
 * attempt (when they name more ports). The caller stops it; `useRedis` does that for you.
 */
export async function startRedis(extraArgs: string[] | (() => Promise<string[]>) = []): Promise<PrivateRedis> {
  const argsFor = typeof extraArgs === 'function' ? extraArgs : async () => extraArgs;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-redis-'));
  let port = 0;
  let args: string[] = [];
  let proc: ChildProcess | null = null;
  const start = async () => {
    const p = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...args], { stdio: 'ignore' });
    live.add(p);
    p.once('exit', () => live.delete(p));
    killWithParent(p, 'redis-server', dir);
    proc = p;
    await waitForPort(port, 10_000, p);
  };
  const kill = async () => {
    const p = proc;
    proc = null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGKILL');
    });
  };
  // A port found free can be taken before redis-server binds it (any process's outgoing
  // connection may get it as its local port): then start over on other ports.
  for (let attempt = 1; ; attempt++) {
    port = await freePort();
    args = await argsFor();
    try {
      await start();
      break;
    } catch (err) {
      await kill();
      if (attempt === 3) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }
  const handle: PrivateRedis = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return proc?.pid ?? 0;
    },
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

/** What reading INFO needs of a client (ioredis, or the store's RedisLike). */
interface InfoReader {
  info(section: string): Promise<string>;
}

/** Calls Redis has run per command (lower-case name, e.g. `fcall`) since start or CONFIG RESETSTAT. */
export async function commandCallCounts(redis: InfoReader): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const m of (await redis.info('commandstats')).matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out.set(m[1], Number(m[2]));
  return out;
}

/** Calls of the named commands together (`'evalsha', 'eval'`: a script however ioredis sent it). */
export async function commandCalls(redis: InfoReader, ...names: string[]): Promise<number> {
  const counts = await commandCallCounts(redis);
  return names.reduce((n, name) => n + (counts.get(name) ?? 0), 0);
}
