import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { configEnvNames } from './configEnvNames';

const ROOT = path.resolve(__dirname, '../../..');
const DOCS = ['README.md', 'deploy/README.md', 'deploy/RUNBOOK.md', 'loadtest/k6/README.md', 'docs/protocol.md'];

function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`no "## ${heading}" section`);
  const next = markdown.indexOf('\n## ', start + 1);
  return markdown.slice(start, next < 0 ? undefined : next);
}

describe('documentation', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

  it('the README configuration reference names every variable config.ts reads', () => {
    const table = section(readme, 'Configuration reference');
    const documented = new Set([...table.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]));
    const names = [...configEnvNames()];
    expect(names.length).toBeGreaterThan(30);
    expect(names.filter((n) => !documented.has(n))).toEqual([]);
  });

  it.each(DOCS)('%s: relative links point at files of this repository', (file) => {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    const links = [...text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]).filter((l) => !/^[a-z]+:/.test(l));
    for (const l of links) {
      const target = path.resolve(path.dirname(path.join(ROOT, file)), l);
      expect({ link: l, inRepo: target.startsWith(ROOT + path.sep), exists: existsSync(target) }).toEqual({ link: l, inRepo: true, exists: true });
    }
  });

  it('the README links the protocol and API references inside the repository', () => {
    expect(readme).not.toContain('../shared/SPEC.md');
    expect(readme).toContain('](docs/protocol.md)');
    expect(readme).toContain('](docs/openapi.json)');
    expect(readme).toContain('](loadtest/k6/README.md)');
  });
});
