import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { TemplatedApp } from 'uWebSockets.js';
import { route, type HttpDeps } from './uws';

/**
 * Where the OpenAPI document is: copied next to this file by the build (scripts/copy-assets.mjs),
 * or the repository's docs/openapi.json when running from source (tests).
 */
const CANDIDATES = [path.join(__dirname, 'openapi.json'), path.resolve(__dirname, '../../../../docs/openapi.json')];

/** GET /openapi.json: the HTTP API reference (docs/openapi.json), no auth. */
export function registerDocsRoutes(app: TemplatedApp, deps: HttpDeps): void {
  const file = CANDIDATES.find((f) => existsSync(f));
  // A build without the document is broken: say so at start-up rather than 404 at run time.
  if (!file) throw new Error(`OpenAPI document missing: looked for ${CANDIDATES.join(', ')}`);
  const body = readFileSync(file);
  JSON.parse(body.toString('utf8')); // refuse to serve a corrupt copy
  route(app, deps, 'get', '/openapi.json', { name: '/openapi.json', auth: 'none' }, () => ({
    status: 200,
    contentType: 'application/json',
    headers: { 'cache-control': 'no-cache', 'x-content-type-options': 'nosniff', 'access-control-allow-origin': '*' },
    body,
  }));
}
