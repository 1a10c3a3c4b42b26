import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { jwtTimes, MemoryStorage, refreshDelayMs, type SessionClient } from '../src';
import { FileStorage } from '../src/node';
import { closeClients, pendingIn, sdkClient, until } from './helpers';
import { frameBytes } from '../src/wire';

function jwt(claims: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'HS256' })}.${b64(claims)}.sig`;
}

describe('token timing', () => {
  const now = 1_000_000_000_000;
  const s = now / 1000;
  it.each([
    ['15-minute token: 60 s before exp', { iat: s, exp: s + 900 }, 60_000, 840_000],
    ['8-second token: at half-life, not at once', { iat: s, exp: s + 8 }, 60_000, 4000],
    ['already expired: now', { iat: s - 100, exp: s - 10 }, 60_000, 0],
    ['no iat: lifetime counted from receipt', { exp: s + 10 }, 60_000, 5000],
    ['margin 0: never proactively', { iat: s, exp: s + 900 }, 0, null],
  ])('%s', (_name, claims, margin, expected) => {
    expect(refreshDelayMs(jwt(claims), now, margin)).toBe(expected);
  });

  it('reads exp/iat from a JWT payload and nothing from opaque tokens', () => {
    expect(jwtTimes(jwt({ exp: 10, iat: 5, name: 'Zoë' }))).toEqual({ exp: 10_000, iat: 5000 });
    expect(jwtTimes('opaque')).toBeNull();
    expect(jwtTimes('a.b.c')).toBeNull();
    expect(jwtTimes(jwt({ exp: 'soon' }))).toBeNull();
    expect(refreshDelayMs('opaque', 0, 60_000)).toBeNull();
  });
});

describe('frame size', () => {
  it.each([['abc', 3], ['é', 2], ['€', 3], ['😀', 4], ['a😀é', 7]])('%s is %d bytes', (text, bytes) => {
    expect(frameBytes(text)).toBe(bytes);
    expect(frameBytes(text)).toBe(Buffer.byteLength(text));
  });

  it('a binary frame is its byte length', () => {
    expect(frameBytes(new Uint8Array(7))).toBe(7);
  });
});

describe('storage adapters', () => {
  it('MemoryStorage has the Web Storage shape', () => {
    const m = new MemoryStorage();
    expect(m.getItem('k')).toBeNull();
    m.setItem('k', 'v');
    expect(m.getItem('k')).toBe('v');
    m.removeItem('k');
    expect(m.keys()).toEqual([]);
  });

  it('FileStorage keeps each key in its own file inside its directory, replaced atomically', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-fs-'));
    try {
      const fs = new FileStorage(path.join(dir, 'nested'));
      expect(await fs.getItem('a')).toBeNull();
      await fs.setItem('../../escape', 'x');
      await fs.setItem('a:b/c', 'one');
      await Promise.all(Array.from({ length: 20 }, (_, i) => fs.setItem('a:b/c', `v${i}`)));
      expect(await fs.getItem('a:b/c')).toMatch(/^v\d+$/);
      expect(await fs.getItem('../../escape')).toBe('x');
      expect(readdirSync(dir)).toEqual(['nested']);
      expect(readdirSync(path.join(dir, 'nested')).sort()).toEqual(['%2E%2E%2F%2E%2E%2Fescape.json', 'a%3Ab%2Fc.json']);
      await fs.removeItem('a:b/c');
      await fs.removeItem('never-set');
      expect(await fs.getItem('a:b/c')).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('writes refused before anything is queued', () => {
  afterEach(closeClients);
  function offlineClient(storage: MemoryStorage): SessionClient<{ n: number }> {
    return sdkClient<{ n: number }>({ url: 'ws://127.0.0.1:1/ws', token: 't', deviceId: 'd', sessionId: '00000000-0000-4000-8000-000000000001', storage });
  }

  it.each([NaN, Infinity, -Infinity])('increment by %s rejects with invalid_argument (JSON would send null, counted as +1)', async (delta) => {
    const storage = new MemoryStorage();
    const c = offlineClient(storage);
    await expect(c.increment('n', delta)).rejects.toMatchObject({ code: 'invalid_argument' });
    await c.close();
    expect(storage.keys()).toEqual([]);
    expect(c.pendingWrites).toBe(0);
  }, 2000);

  it.each([
    ['a lone surrogate', '\ud800'],
    ['257 ASCII bytes', 'k'.repeat(257)],
    ['100 characters but 300 bytes of UTF-8', '€'.repeat(100)],
    ['empty', ''],
  ])('a key that is %s rejects with invalid_argument, as the server would', async (_name, key) => {
    const storage = new MemoryStorage();
    const c = offlineClient(storage);
    await expect(c.set(key as 'n', 1)).rejects.toMatchObject({ code: 'invalid_argument' });
    await c.close();
    expect(storage.keys()).toEqual([]);
  }, 2000);

  it('a key of 256 bytes of UTF-8 is queued', async () => {
    const storage = new MemoryStorage();
    const c = offlineClient(storage);
    const key = `${'€'.repeat(85)}k` as 'n'; // 85 × 3 + 1
    void c.set(key, 1).catch(() => undefined); // rejected as closed by close() below, once stored
    await until(() => c.pendingWrites === 1);
    await c.close();
    expect(pendingIn(storage.getItem(storage.keys()[0])).map((w) => w.k)).toEqual([key]);
  }, 2000);

  it('a write made while close() runs rejects with closed (storage still being read), and nothing is queued', async () => {
    const inner = new MemoryStorage();
    const slow = {
      getItem: (k: string) => new Promise<string | null>((r) => setTimeout(() => r(inner.getItem(k)), 50)),
      setItem: (k: string, v: string) => inner.setItem(k, v),
      removeItem: (k: string) => inner.removeItem(k),
    };
    const c = sdkClient({ url: 'ws://127.0.0.1:1/ws', token: 't', deviceId: 'd', sessionId: '00000000-0000-4000-8000-000000000001', storage: slow });
    const write = c.set('k', 1);
    await c.close();
    await expect(write).rejects.toMatchObject({ code: 'closed' });
    expect(inner.keys()).toEqual([]);
  }, 2000);
});

describe('constructor arguments', () => {
  it.each([
    ['empty', ''],
    ['129 characters', 'd'.repeat(129)],
    ['a lone surrogate (it would reach the server as U+FFFD and share a queue with another id)', 'phone-\udc00'],
  ])('a deviceId that is %s is refused with invalid_argument', (_name, deviceId) => {
    expect(() => sdkClient({ url: 'ws://127.0.0.1:1/ws', token: 't', deviceId }))
      .toThrow(expect.objectContaining({ code: 'invalid_argument' }));
  });

  it('a deviceId of 128 characters with a surrogate pair is accepted', () => {
    expect(() => sdkClient({ url: 'ws://127.0.0.1:1/ws', token: 't', deviceId: `${'d'.repeat(126)}😀` })).not.toThrow();
  });
});
