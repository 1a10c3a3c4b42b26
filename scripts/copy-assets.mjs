// Copies non-TypeScript runtime assets (Lua scripts, the admin page, docs/openapi.json) next to the compiled JS.
import { cpSync, existsSync } from 'node:fs';
import path from 'node:path';

const pkg = process.cwd();
for (const rel of ['store/lua', 'http/admin-page']) {
  const from = path.join(pkg, 'src', rel);
  if (existsSync(from)) cpSync(from, path.join(pkg, 'dist', rel), { recursive: true });
}
// The gateway serves the repository's API reference at GET /openapi.json (http/docs.ts).
const openapi = path.join(pkg, '..', '..', 'docs', 'openapi.json');
if (existsSync(openapi)) cpSync(openapi, path.join(pkg, 'dist', 'http', 'openapi.json'));
