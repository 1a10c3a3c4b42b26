import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { api, useNode } from '@harmonyflow/testkit';
import { registeredRoutes } from '../src/http/uws';

const DOC_FILE = path.resolve(__dirname, '../../../docs/openapi.json');
const METHODS = ['get', 'post', 'put', 'delete', 'patch'] as const;
/** Catch-alls registered to answer 404 `not_found` on unknown routes: not part of the API. */
const CATCH_ALL = '/*';
/** Served by app.ws(), not route(): documented as the upgrade it is. */
const WEBSOCKET = 'GET /ws';
/** Failure statuses whose body is not the error shape: readiness details, the upgrade's plain text. */
const NOT_ERROR_BODIES = new Set(['get /ready 503', 'get /ws 503']);

/**
 * Validates documents against the OpenAPI JSON schemas with @seriousme/openapi-schema-validator.
 * It is an ES module, which this jest setup cannot import: it runs in one child Node process.
 */
function validateOpenApi(docs: unknown[]): Array<{ valid: boolean; version: string; errors?: unknown }> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-openapi-'));
  const files = docs.map((d, i) => {
    const f = path.join(dir, `doc${i}.json`);
    writeFileSync(f, JSON.stringify(d));
    return f;
  });
  const script = `import { Validator } from '@seriousme/openapi-schema-validator';
    const out = [];
    for (const f of process.argv.slice(1)) { const v = new Validator(); const r = await v.validate(f); out.push({ valid: r.valid, version: v.version, errors: r.errors }); }
    console.log(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script, ...files], { cwd: __dirname, encoding: 'utf8' });
  rmSync(dir, { recursive: true, force: true });
  if (r.status !== 0) throw new Error(`validator failed to run: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

function uwsToOpenApi(pattern: string): string {
  return pattern.replace(/\/:([A-Za-z0-9_]+)/g, '/{$1}');
}

describe('API reference (docs/openapi.json, GET /openapi.json)', () => {
  const n = useNode();
  const doc = JSON.parse(readFileSync(DOC_FILE, 'utf8'));

  it('is a valid OpenAPI 3.1 document (and the validator rejects a broken one)', () => {
    const broken = structuredClone(doc);
    broken.paths['/health'].get.responses = 'none';
    const [ok, bad] = validateOpenApi([doc, broken]);
    expect(ok).toEqual({ valid: true, version: '3.1' });
    expect(bad.valid).toBe(false);
  });

  it('documents exactly the routes a node registers, with the same path parameters', () => {
    const registered = (registeredRoutes.get(n().node.app) ?? [])
      .filter((r) => r.pattern !== CATCH_ALL)
      .map((r) => `${r.method} ${uwsToOpenApi(r.pattern)}`);
    expect(registered.length).toBeGreaterThan(20);
    const documented: string[] = [];
    for (const [p, item] of Object.entries<Record<string, unknown>>(doc.paths)) {
      for (const m of METHODS) if (item[m]) documented.push(`${m.toUpperCase()} ${p}`);
    }
    expect(documented.filter((d) => d !== WEBSOCKET).sort()).toEqual([...new Set(registered)].sort());
    for (const [p, item] of Object.entries<Record<string, any>>(doc.paths)) {
      const inPath = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      for (const m of METHODS) {
        if (!item[m]) continue;
        const declared = (item[m].parameters ?? []).filter((x: { in: string }) => x.in === 'path').map((x: { name: string }) => x.name).sort();
        expect({ op: `${m} ${p}`, params: declared }).toEqual({ op: `${m} ${p}`, params: inPath });
      }
    }
  });

  it('every operation documents its error statuses with the error body, and protected routes their 401', () => {
    for (const [p, item] of Object.entries<Record<string, any>>(doc.paths)) {
      for (const m of METHODS) {
        const op = item[m];
        if (!op) continue;
        const statuses = Object.keys(op.responses);
        expect({ op: `${m} ${p}`, hasSuccess: statuses.some((s) => /^[123]/.test(s)) }).toEqual({ op: `${m} ${p}`, hasSuccess: true });
        if ((op.security ?? []).some((s: Record<string, unknown>) => 'bearerAuth' in s)) expect({ op: `${m} ${p}`, has401: statuses.includes('401') }).toEqual({ op: `${m} ${p}`, has401: true });
        for (const s of statuses.filter((x) => Number(x) >= 400 && !NOT_ERROR_BODIES.has(`${m} ${p} ${x}`))) {
          const r = op.responses[s];
          const schema = r.$ref ? doc.components.responses[r.$ref.split('/').pop()].content['application/json'].schema : r.content?.['application/json']?.schema;
          expect({ op: `${m} ${p} ${s}`, errorBody: JSON.stringify(schema ?? null).includes('#/components/schemas/Error') || JSON.stringify(schema ?? null).includes('VersionConflict') })
            .toEqual({ op: `${m} ${p} ${s}`, errorBody: true });
        }
      }
    }
  });

  it('GET /openapi.json serves the document without a token', async () => {
    const r = await api(n().url, 'GET', '/openapi.json');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toBe('application/json');
    expect(r.body).toEqual(doc);
  });

  it('documented error codes are real: a few routes answer as the document says', async () => {
    const token = await n().token('doc-user');
    const bad = await api(n().url, 'GET', '/session/not-a-uuid', { token });
    expect(bad.status).toBe(400);
    expect(doc.paths['/session/{uuid}'].get.responses['400'].description).toContain(`\`${bad.body.error}\``);
    const noAuth = await api(n().url, 'GET', '/admin/sessions');
    expect(noAuth.status).toBe(401);
    const notAdmin = await api(n().url, 'GET', '/admin/sessions', { token });
    expect(notAdmin.status).toBe(403);
    expect(doc.components.responses.AdminRequired.description).toContain(`\`${notAdmin.body.error}\``);
  });
});
