import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { MessageType } from '@harmonyflow/protocol';
import { api, closeAllDevices, connectDevice, useNode } from '@harmonyflow/testkit';

const CHROMIUM = '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) console.warn(`SKIPPED admin.page: no Chromium at ${CHROMIUM} (Debian: apt-get install chromium)`);
const describeIf = HAVE_CHROMIUM ? describe : describe.skip;
const SHOTS = path.resolve(__dirname, '../../../.tmp');

describeIf('admin page in Chromium: find a user\'s sessions, open one, kick a device', () => {
  const n = useNode();
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await closeAllDevices();
    await browser?.close();
  });

  it('an operator searches by user, sees state, version, epoch and devices, and kicks one (closed with 4000)', async () => {
    const alice = await n().token('alice-page');
    const bob = await n().token('bob-page');
    const sid = '6f1c2a9e-8b3d-4c5e-9f70-1a2b3c4d5e6f';
    const other = '0a0b0c0d-0e0f-4a1b-8c2d-3e4f5a6b7c8d';
    expect((await api(n().url, 'POST', '/session/snapshot', { token: alice, body: { session_id: sid, state_data: { mood: 'calm', streak_days: 12 }, version: 1 } })).status).toBe(201);
    expect((await api(n().url, 'POST', '/session/snapshot', { token: bob, body: { session_id: other, state_data: { mood: 'bob' } } })).status).toBe(201);
    const phone = await connectDevice(n().wsUrl);
    await phone.auth({ token: alice, device_id: 'phone-1', device_type: 'mobile', session_id: sid });
    const tablet = await connectDevice(n().wsUrl);
    await tablet.auth({ token: alice, device_id: 'tablet-2', device_type: 'tablet', session_id: sid });
    await phone.next(MessageType.DEVICE_JOINED);
    // A write over WebSocket: version 2 is what the page must show.
    phone.send({ type: MessageType.STATE_UPDATE, correlation_id: 'c1', payload: { key: 'streak_days', value: 13, operation: 'SET' } });
    await phone.next(MessageType.STATE_UPDATE_ACK);

    const page = await browser.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${n().url}/admin/`);
    await page.fill('#token-input', await n().token('ops', 'admin'));
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#dashboard:not([hidden])');

    await page.fill('#user-id-input', 'alice-page');
    await page.click('#user-search-submit');
    await page.waitForSelector(`[data-open-session="${sid}"]`);
    expect(await page.locator('[data-open-session]').count()).toBe(1); // bob's session filtered out
    expect(await page.textContent('#user-status')).toContain('1 session of alice-page');
    const snapshot = (await api(n().url, 'GET', `/session/${sid}`, { token: alice })).body;
    expect(snapshot.epoch).toMatch(/\S{8,}/);
    expect(await page.textContent('#user-results')).toContain(snapshot.epoch);

    await page.click(`[data-open-session="${sid}"]`);
    await page.waitForSelector('#session-devices [data-device="tablet-2"]');
    expect(await page.textContent('#session-title')).toContain(sid);
    expect(await page.textContent('#session-version')).toBe('2');
    expect(await page.textContent('#session-user-id')).toBe('alice-page');
    expect(await page.textContent('#session-epoch')).toBe(snapshot.epoch);
    expect(JSON.parse((await page.textContent('#session-state'))!)).toEqual({ mood: 'calm', streak_days: 13 });
    for (const d of ['phone-1', 'tablet-2']) expect(await page.textContent(`#session-devices [data-device="${d}"]`)).toContain('online');

    await page.click('[data-kick="tablet-2"]');
    expect(await tablet.closed).toBe(4000);
    await page.waitForSelector('#session-devices [data-device="tablet-2"]', { state: 'detached' });
    expect(await page.textContent('#session-status')).toContain('Kicked tablet-2 (204)');
    const left = await phone.waitFor((e) => e.type === MessageType.DEVICE_LEFT && e.payload.device_id === 'tablet-2');
    expect(left.payload.reason).toBe('kicked');
    expect(phone.closeCode).toBeNull();

    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, 'admin-page-session.png'), fullPage: true });
    expect(pageErrors).toEqual([]);
    await page.close();
  });
});
