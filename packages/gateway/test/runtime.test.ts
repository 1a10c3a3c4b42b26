import { uwsIsNative } from '../src/uwsRuntime';

describe('uWebSockets.js runtime', () => {
  it('loaded the native binary, not the JS fallback', () => {
    expect(uwsIsNative).toBe(true);
    const binaries = Object.keys(require.cache).filter((p) => /uws_[a-z0-9]+_[a-z0-9]+_\d+\.node$/.test(p));
    expect(binaries).toHaveLength(1);
    expect(binaries[0]).toContain(`_${process.versions.modules}.node`);
  });
});
