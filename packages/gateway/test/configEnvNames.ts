import { readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Every environment variable name config.ts reads: quoted names ('SNAPSHOT_TTL_SECONDS') and
 * property reads (env.REDIS_URL). Read as text, so whatever the merged file holds today counts.
 */
export function configEnvNames(): Set<string> {
  const text = readFileSync(path.resolve(__dirname, '../src/config.ts'), 'utf8');
  const names = new Set<string>();
  for (const m of text.matchAll(/['"`]([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{4,})['"`]/g)) names.add(m[1]);
  for (const m of text.matchAll(/\benv\.([A-Z][A-Z0-9_]+)/g)) names.add(m[1]);
  return names;
}
