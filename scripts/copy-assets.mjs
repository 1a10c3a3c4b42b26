// Copies non-TypeScript runtime assets (Lua scripts, the admin page) next to the compiled JS.
import { cpSync, existsSync } from 'node:fs';
import path from 'node:path';

const pkg = process.cwd();
for (const rel of ['store/lua', 'http/admin-page']) {
  const from = path.join(pkg, 'src', rel);
  if (existsSync(from)) cpSync(from, path.join(pkg, 'dist', rel), { recursive: true });
}
