#!/usr/bin/env node
// Serves the example page with the SDK bundled by esbuild.
//   npm run example                      start a gateway (embedded store) and print a ready URL
//   npm run example -- --ws ws://127.0.0.1:8080/ws [--token T] [--port 5173]
// With --ws, open the printed URL with &token=… (and &session=…) for your own gateway.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '../..');
const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const host = opt('host', '127.0.0.1');
const port = Number(opt('port', '5173'));

async function bundleApp() {
  const r = await build({
    entryPoints: [path.join(here, 'app.js')], bundle: true, minify: true, format: 'esm', platform: 'browser',
    target: 'es2020', write: false, logLevel: 'warning', absWorkingDir: repo,
  });
  return r.outputFiles[0].text;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** A gateway child process on the embedded store, with secrets we can mint a token for. */
async function startGateway() {
  const env = {
    ...process.env, HOST: '127.0.0.1', PORT: String(await freePort()), LOG_LEVEL: 'warn',
    JWT_SECRET: 'example-access-secret-0123456789abcdef0123', JWT_REFRESH_SECRET: 'example-refresh-secret-0123456789abcdef012',
  };
  const child = spawn(process.execPath, [path.join(repo, 'packages/gateway/dist/main.js')], { env, stdio: ['ignore', 'inherit', 'inherit'] });
  process.on('exit', () => child.kill());
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
  const base = `http://127.0.0.1:${env.PORT}`;
  // Poll until it answers; a non-OK answer (something else on the port?) is waited on like no answer, not spun on.
  const deadline = Date.now() + 15_000;
  for (;;) {
    const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) }).catch(() => null); // null: not listening yet, or not answering
    if (res?.ok) break;
    if (child.exitCode !== null) throw new Error(`the gateway exited (code ${child.exitCode})`);
    if (Date.now() > deadline) throw new Error(`the gateway did not become healthy within 15 s (last answer: ${res ? `HTTP ${res.status}` : 'none'})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const { TokenService, loadConfig } = createRequire(import.meta.url)(path.join(repo, 'packages/gateway/dist/index.js'));
  const token = await new TokenService(loadConfig(env).jwt).signAccess('example-user', 'user', 24 * 3600);
  return { ws: `ws://127.0.0.1:${env.PORT}/ws`, token };
}

const app = await bundleApp();
const html = await readFile(path.join(here, 'index.html'));
const server = http.createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x');
  if (url.pathname === '/' || url.pathname === '/index.html') {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(html);
  } else if (url.pathname === '/app.js') {
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'no-store' }).end(app);
  } else {
    res.writeHead(404).end('not found');
  }
});
await new Promise((resolve) => server.listen(port, host, resolve));
const origin = `http://${host}:${server.address().port}`;
console.log(`example page served at ${origin}/ (app bundle ${app.length} bytes)`);

if (!args.includes('--no-gateway')) {
  const target = opt('ws') ? { ws: opt('ws'), token: opt('token') } : await startGateway();
  const q = new URLSearchParams({ ws: target.ws, session: randomUUID() });
  if (target.token) q.set('token', target.token);
  console.log(`open ${origin}/?${q} (in two tabs to see them sync)`);
}
