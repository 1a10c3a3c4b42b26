import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { api, spawnNode, startRedis, testTokens, type NodeProcess, type PrivateRedis } from '@harmonyflow/testkit';

// The example page (examples/web, served by its own script) in headless Chromium, two pages on a
// two-node cluster sharing one Redis.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const repo = path.resolve(__dirname, '../../..');
const tokens = testTokens();

let redis: PrivateRedis;
let nodes: NodeProcess[] = [];
let server: ChildProcess;
let origin: string;
let browser: Browser;

async function startNodes(ports?: number[]): Promise<NodeProcess[]> {
  return Promise.all([0, 1].map((i) => spawnNode({ REDIS_URL: redis.url, LOG_LEVEL: 'warn', NODE_ID: `web${i + 1}`, ...(ports ? { PORT: String(ports[i]) } : {}) })));
}

async function stopNodes(): Promise<void> {
  for (const n of nodes) if (n.proc.exitCode === null) n.kill('SIGKILL');
  await Promise.all(nodes.map((n) => n.exited));
}

beforeAll(async () => {
  redis = await startRedis();
  nodes = await startNodes();
  server = spawn(process.execPath, [path.join(repo, 'examples/web/serve.mjs'), '--port', '0', '--no-gateway'], { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  server.stderr!.on('data', (d) => (out += d));
  origin = await new Promise<string>((resolve, reject) => {
    server.stdout!.on('data', (d) => {
      out += d;
      const m = /served at (http:\/\/[^/\s]+)\//.exec(out);
      if (m) resolve(m[1]);
    });
    server.once('exit', (code) => reject(new Error(`example server exited ${code}: ${out}`)));
  });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  server?.kill();
  await stopNodes();
  await redis?.stop();
});

const text = (page: Page, id: string) => page.textContent(`#${id}`);
const waitText = (page: Page, id: string, value: string, timeout = 15_000) =>
  page.waitForFunction(([i, v]) => document.getElementById(i)?.textContent === v, [id, value], { timeout });

describe('example page in Chromium on a 2-node cluster', () => {
  it('opened without a token, the page says why instead of staying inert', async () => {
    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(`${origin}/?${new URLSearchParams({ ws: nodes[0].wsUrl })}`);
    await page.waitForFunction(() => /token/i.test(document.getElementById('error')?.textContent ?? ''), undefined, { timeout: 10_000 });
    expect(await page.isDisabled('#inc')).toBe(true);
    expect(pageErrors).toEqual([]);
    await page.close();
  });

  it('syncs two pages; a click made with the nodes down is queued in localStorage, survives a reload, and is applied once', async () => {
    const sid = randomUUID();
    const token = await tokens.signAccess('alice', 'user', 3600);
    const url = (node: NodeProcess, device: string) => `${origin}/?${new URLSearchParams({ ws: node.wsUrl, token, session: sid, device })}`;
    const a = await browser.newPage();
    const b = await browser.newPage(); // its own context: its own localStorage
    const pageErrors: string[] = [];
    for (const p of [a, b]) p.on('pageerror', (e) => pageErrors.push(e.message));
    await a.goto(url(nodes[0], 'page-a'));
    await b.goto(url(nodes[1], 'page-b'));
    await waitText(a, 'status', 'connected');
    await waitText(b, 'status', 'connected');

    await a.click('#inc');
    await waitText(b, 'count', '1');
    await waitText(a, 'count', '1');
    await b.waitForFunction(() => document.getElementById('devices')!.textContent!.includes('page-a'));

    const ports = nodes.map((n) => n.port);
    await stopNodes();
    await waitText(a, 'status', 'reconnecting');
    await a.click('#inc');
    await waitText(a, 'pending', '1');
    const key = `harmonyflow:outbox:page-a:${sid}`;
    const queued = JSON.parse((await a.evaluate((k) => localStorage.getItem(k), key))!);
    expect(queued.pending).toEqual([expect.objectContaining({ k: 'count', op: 'INCREMENT', v: 1, m: 2 })]);

    await a.reload();
    await waitText(a, 'pending', '1'); // read back from localStorage by the new page's client
    expect(await text(a, 'status')).not.toBe('connected');
    nodes = await startNodes(ports);
    await waitText(a, 'status', 'connected', 20_000);
    await waitText(a, 'pending', '0');
    await waitText(a, 'count', '2');
    await waitText(b, 'count', '2', 20_000);
    const read = async () => (await api(nodes[1].url, 'GET', `/session/${sid}`, { token })).body;
    expect(await read()).toMatchObject({ version: 2, state_data: { count: 2 } });

    // Once more from the top: nothing left to send, nothing applied twice.
    await a.reload();
    await waitText(a, 'status', 'connected');
    expect(await text(a, 'pending')).toBe('0');
    await new Promise((r) => setTimeout(r, 500));
    expect(await read()).toMatchObject({ version: 2, state_data: { count: 2 } });
    expect(pageErrors).toEqual([]);
    await a.screenshot({ path: path.join(repo, '.tmp/example-page.png') }); // for a human to look at
  }, 90_000);
});
