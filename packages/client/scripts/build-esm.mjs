// ES module builds of the package's entries (dist/esm/*.mjs) beside tsc's CommonJS ones.
// Each entry is one file with @harmonyflow/protocol inlined from source, so Node's ESM loader
// never meets the protocol's CommonJS and bundlers can tree-shake it.
import { build } from 'esbuild';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const protocolSrc = path.resolve(root, '../protocol/src');

const common = {
  bundle: true,
  format: 'esm',
  target: 'es2020',
  outExtension: { '.js': '.mjs' },
  alias: { '@harmonyflow/protocol': protocolSrc },
  sourcemap: true,
  logLevel: 'warning',
};

await build({ ...common, entryPoints: { index: path.join(root, 'src/index.ts') }, outdir: path.join(root, 'dist/esm'), platform: 'neutral' });
// protobufjs is CommonJS whose names Node's ESM loader cannot see: bundled here, not imported.
await build({ ...common, entryPoints: { proto: path.join(root, 'src/proto.ts') }, outdir: path.join(root, 'dist/esm'), platform: 'neutral', mainFields: ['module', 'main'] });
await build({ ...common, entryPoints: { node: path.join(root, 'src/node.ts') }, outdir: path.join(root, 'dist/esm'), platform: 'node' });
