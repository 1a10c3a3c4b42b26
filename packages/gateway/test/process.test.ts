import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { api, spawnNode, testTokens } from '@harmonyflow/testkit';

const MAIN = path.resolve(__dirname, '../dist/main.js');
const TOKEN_CLI = path.resolve(__dirname, '../dist/cli/token.js');

function run(file: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [file, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => resolve({ code, out, err }));
  });
}

describe('gateway process', () => {
  it('refuses bad configuration with one line naming the variable', async () => {
    const r = await run(MAIN, [], { MAX_STATE_BYTES: 'lots' });
    expect(r.code).toBe(1);
    expect(r.err.trim().split('\n')).toEqual(['harmonyflow: bad configuration: MAX_STATE_BYTES: must be a whole number, got "lots"']);
    const p = await run(MAIN, [], { NODE_ENV: 'production' });
    expect(p.code).toBe(1);
    expect(p.err).toContain('JWT_SECRET: is required when NODE_ENV=production');
  });

  it('starts embedded, prints a dev token in dev mode, serves it, and exits 0 on SIGTERM', async () => {
    const node = await spawnNode({ JWT_SECRET: undefined, JWT_REFRESH_SECRET: undefined, LOG_LEVEL: 'info' });
    const m = /Dev admin token \(24h\):\n(\S+)/.exec(node.output());
    expect(m).not.toBeNull();
    const id = randomUUID();
    const w = await api(node.url, 'POST', '/session/snapshot', { token: m![1], body: { session_id: id, state_data: { a: 1 } } });
    expect(w.status).toBe(201);
    node.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  });

  it('still stops on SIGTERM when whatever read its log has gone away (broken stdout)', async () => {
    const node = await spawnNode({ LOG_LEVEL: 'info' });
    // The reading end of its stdout closes: every log line from now on meets EPIPE.
    node.proc.stdout!.destroy();
    node.kill('SIGTERM');
    const code = await Promise.race([node.exited, new Promise<string>((r) => setTimeout(() => r('still running'), 10_000))]);
    if (code === 'still running') node.kill('SIGKILL');
    expect(code).toBe(0);
  }, 20_000);

  it('finishes an in-flight request on SIGTERM before exiting', async () => {
    const node = await spawnNode();
    const token = await testTokens().signAccess('alice', 'user');
    const sid = randomUUID();
    const body = JSON.stringify({ session_id: sid, state_data: { finished: true } });
    // Headers and half the body now; SIGTERM; the other half after it: the request was in flight.
    const sock = net.connect(node.port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    let reply = '';
    sock.on('data', (d) => (reply += d));
    sock.write(`POST /session/snapshot HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 20)}`);
    await new Promise((r) => setTimeout(r, 100));
    node.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    sock.write(body.slice(20));
    expect(await node.exited).toBe(0);
    expect(reply).toMatch(/^HTTP\/1\.1 201 /);
    expect(reply).toContain('"finished":true');
    sock.destroy();
  });

  it('npm run token mints tokens the server accepts (same secrets)', async () => {
    const node = await spawnNode();
    const env = { JWT_SECRET: (await import('@harmonyflow/testkit')).TEST_JWT_SECRET, JWT_REFRESH_SECRET: (await import('@harmonyflow/testkit')).TEST_JWT_REFRESH_SECRET };
    const access = await run(TOKEN_CLI, ['--sub', 'user-123', '--role', 'admin'], env);
    expect(access.code).toBe(0);
    const who = await api(node.url, 'GET', `/session/${randomUUID()}`, { token: access.out.trim() });
    expect(who.status).toBe(404);
    const refresh = await run(TOKEN_CLI, ['--sub', 'user-123', '--refresh'], env);
    const rotated = await api(node.url, 'POST', '/auth/refresh', { body: { refresh_token: refresh.out.trim() } });
    expect(rotated.status).toBe(200);
    const bad = await run(TOKEN_CLI, ['--role', 'root'], env);
    expect(bad.code).toBe(2);
    node.kill('SIGTERM');
    await node.exited;
  });
});
