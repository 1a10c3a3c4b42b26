import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { build, type Metafile } from 'esbuild';

// Runs on the built package (`npm test` builds first), as an app would consume it.
const pkgDir = path.resolve(__dirname, '..');
const repoRoot = path.resolve(pkgDir, '../..');
const SERVER_ONLY = /protobufjs|@protobufjs|msgpackr|[\\/]long[\\/]/;

async function bundle(specifier: string): Promise<{ text: string; inputs: string[] }> {
  const r = await build({
    stdin: { contents: `export * from '${specifier}';`, resolveDir: repoRoot, loader: 'js' },
    bundle: true, minify: true, format: 'esm', platform: 'browser', target: 'es2020', write: false, metafile: true, logLevel: 'silent',
  });
  return { text: r.outputFiles[0].text, inputs: Object.keys((r.metafile as Metafile).inputs) };
}

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: repoRoot, encoding: 'utf8' }).trim();
}

describe('@harmonyflow/client packaging', () => {
  it('the JSON-only browser bundle is at most 15 KB gzip and holds no protobufjs or msgpackr', async () => {
    const { text, inputs } = await bundle('@harmonyflow/client');
    const gz = gzipSync(text, { level: 9 }).length;
    console.log(`browser bundle: ${text.length} bytes minified, ${gz} bytes gzip`);
    expect(gz).toBeLessThanOrEqual(15 * 1024);
    expect(inputs.filter((i) => SERVER_ONLY.test(i))).toEqual([]);
    expect(text).not.toMatch(/protobuf|msgpack|Packr/i);
    expect(text).toContain('harmonyflow.v1.json');
  });

  it('the same checks catch protobufjs and msgpackr where they are (so they can fail)', async () => {
    const { text, inputs } = await bundle('@harmonyflow/protocol');
    expect(inputs.filter((i) => /protobufjs/.test(i)).length).toBeGreaterThan(0);
    expect(inputs.filter((i) => /msgpackr/.test(i)).length).toBeGreaterThan(0);
    expect(text).toMatch(/Packr/);
    const proto = await bundle('@harmonyflow/client/proto');
    expect(proto.text).toContain('harmonyflow.v1.proto');
    expect(gzipSync(proto.text).length).toBeGreaterThan(15 * 1024);
  });

  it('loads as CommonJS and as an ES module in Node; the main entry does not load protobufjs or msgpackr', () => {
    const cjs = node(['-e', `
      const c = require('@harmonyflow/client');
      const p = require('@harmonyflow/client/proto');
      const n = require('@harmonyflow/client/node');
      console.log(typeof c.SessionClient, typeof p.protoCodec.encode, typeof n.FileStorage);
    `]);
    expect(cjs).toBe('function function function');
    const lightOnly = node(['-e', `require('@harmonyflow/client'); console.log(Object.keys(require.cache).filter((k) => /protobufjs|msgpackr/.test(k)).length)`]);
    expect(lightOnly).toBe('0');
    const esm = node(['--input-type=module', '-e', `
      import { SessionClient, SessionError, MemoryStorage } from '@harmonyflow/client';
      import { protoCodec } from '@harmonyflow/client/proto';
      import { FileStorage } from '@harmonyflow/client/node';
      let code = 'none';
      try { new SessionClient({ url: 'ws://127.0.0.1:1/ws', token: 't', deviceId: 'd' }); } catch (e) { code = e instanceof SessionError ? e.code : 'other'; }
      console.log(code, typeof protoCodec.decode, typeof FileStorage, typeof MemoryStorage);
    `]);
    expect(esm).toBe('no_websocket function function function');
  });

  it('publishes dist and README.md only, with exports for both module systems and ws as an optional peer', () => {
    const pkg = require(path.join(pkgDir, 'package.json'));
    for (const entry of ['.', './proto', './node']) {
      expect(pkg.exports[entry]).toEqual({ types: expect.stringMatching(/^\.\/dist\/.*\.d\.ts$/), import: expect.stringMatching(/\.mjs$/), require: expect.stringMatching(/\.js$/) });
    }
    expect(pkg.peerDependencies.ws).toBeDefined();
    expect(pkg.peerDependenciesMeta.ws.optional).toBe(true);
    const packed = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: pkgDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
    const files: string[] = packed[0].files.map((f: { path: string }) => f.path);
    expect(files).toContain('README.md');
    expect(files).toContain('dist/esm/index.mjs');
    expect(files).toContain('dist/index.d.ts');
    expect(files.filter((f) => !f.startsWith('dist/') && f !== 'README.md' && f !== 'package.json')).toEqual([]);
    expect(files.filter((f) => f.endsWith('.tsbuildinfo'))).toEqual([]);
  });
});
