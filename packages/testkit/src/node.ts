import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { createNode, loadConfig, TokenService, type GatewayNode, type NodeOptions, type Role } from '@harmonyflow/gateway';
import { killWithParent } from './orphans';
import { freePort } from './ports';

export const TEST_JWT_SECRET = 'test-access-secret-0123456789abcdef0123456789';
export const TEST_JWT_REFRESH_SECRET = 'test-refresh-secret-0123456789abcdef012345678';

export interface StartedNode {
  readonly node: GatewayNode;
  readonly url: string;
  readonly wsUrl: string;
  /** A signed access token for this node's secret. */
  token(sub: string, role?: Role, ttlSeconds?: number): Promise<string>;
  stop(): Promise<void>;
}

/** Environment for test nodes: loopback, random port, silent logs, known secrets. */
export function testEnv(extra: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: process.env.HF_TEST_LOG_LEVEL ?? 'silent',
    JWT_SECRET: TEST_JWT_SECRET,
    JWT_REFRESH_SECRET: TEST_JWT_REFRESH_SECRET,
    NODE_ID: `test-${Math.random().toString(36).slice(2, 8)}`,
    ...extra,
  };
}

/** A gateway node in this process on a random loopback port. */
export async function startNode(env: Record<string, string | undefined> = {}, opts: NodeOptions = {}): Promise<StartedNode> {
  const config = loadConfig(testEnv(env));
  const node = await createNode(config, opts);
  const port = await node.listen();
  return {
    node,
    url: `http://127.0.0.1:${port}`,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    token: (sub, role = 'user', ttl) => node.tokens.signAccess(sub, role, ttl),
    stop: () => node.shutdown(),
  };
}

/** beforeAll/afterAll hooks around `startNode`; `env` may be a function evaluated in beforeAll. */
export function useNode(env: Record<string, string | undefined> | (() => Record<string, string | undefined>) = {}, opts: NodeOptions = {}): () => StartedNode {
  let started: StartedNode | null = null;
  beforeAll(async () => {
    started = await startNode(typeof env === 'function' ? env() : env, opts);
  });
  afterAll(async () => {
    await started?.stop();
  });
  return () => {
    if (!started) throw new Error('useNode(): node only available inside tests');
    return started;
  };
}

/** Tokens signed with the test secrets, for nodes running in other processes. */
export function testTokens(): TokenService {
  return new TokenService(loadConfig(testEnv()).jwt);
}

export interface NodeProcess {
  readonly port: number;
  readonly url: string;
  readonly wsUrl: string;
  readonly proc: ChildProcess;
  readonly output: () => string;
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  kill(signal?: NodeJS.Signals): void;
}

const MAIN = path.resolve(__dirname, '../../gateway/dist/main.js');

/**
 * The V8 flags the service runs with, read off the gateway entry's shebang
 * (`#!/usr/bin/env -S node <flags>`; the image's CMD and `npm start` pass the same, which a test
 * checks): spawned gateways, benchmarks included, run as the service does.
 */
export function gatewayNodeFlags(main = MAIN): string[] {
  const first = readFileSync(main, 'utf8').split('\n', 1)[0];
  const m = /^#!.*\bnode((?:\s+--[\w-]+(?:=\S+)?)*)\s*$/.exec(first);
  if (!m) throw new Error(`no node flags on the first line of ${main}: ${first}`);
  return m[1].trim().split(/\s+/).filter(Boolean);
}

// A failed test must not leave gateway processes behind.
const spawned = new Set<ChildProcess>();
process.once('exit', () => {
  for (const p of spawned) p.kill('SIGKILL');
});

export interface SpawnOptions {
  /** Another built checkout whose gateway to run (default: this one). */
  readonly checkout?: string;
  /** Node flags (default: the ones that gateway's entry names, gatewayNodeFlags). */
  readonly flags?: readonly string[];
}

/** A real gateway process (built `dist/main.js`), ready when `/health` answers. */
export async function spawnNode(env: Record<string, string | undefined> = {}, opts: SpawnOptions = {}): Promise<NodeProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const fullEnv = { ...process.env, ...testEnv({ LOG_LEVEL: 'info', ...env, PORT: String(port) }) };
  const main = opts.checkout ? path.resolve(opts.checkout, 'packages/gateway/dist/main.js') : MAIN;
  const proc = spawn(process.execPath, [...(opts.flags ?? gatewayNodeFlags(main)), main], { env: fullEnv as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.add(proc);
  proc.once('exit', () => spawned.delete(proc));
  killWithParent(proc, 'node');
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gateway exited early (${proc.exitCode}):\n${out}`);
    try {
      const r = await fetch(`${url}/health`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`gateway did not start:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { port, url, wsUrl: `ws://127.0.0.1:${port}/ws`, proc, output: () => out, exited, kill: (s = 'SIGTERM') => proc.kill(s) };
}
