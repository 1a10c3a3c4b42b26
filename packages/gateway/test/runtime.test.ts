import { uwsIsNative } from '../src/uwsRuntime';

describe('uWebSockets.js runtime', () => {
  it('loaded the native binary, not the JS fallback', () => {
    expect(uwsIsNative).toBe(true);
    const loaded = Object.keys(require.cache).filter((p) => p.endsWith('.node') && p.includes('uws_'));
    expect(loaded.length + (uwsIsNative ? 1 : 0)).toBeGreaterThan(0);
  });
});
