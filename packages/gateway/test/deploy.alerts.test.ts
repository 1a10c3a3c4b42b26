import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { api, useNode } from '@harmonyflow/testkit';

const ROOT = path.resolve(__dirname, '../../..');
const PROM = path.join(ROOT, 'deploy/prometheus');
const HAVE_PROMTOOL = spawnSync('promtool', ['--version']).status === 0;
if (!HAVE_PROMTOOL) console.warn('SKIPPED promtool checks in deploy.alerts: promtool is not installed (Debian: apt-get install prometheus)');
const itPromtool = HAVE_PROMTOOL ? it : it.skip;

interface Rule { alert: string; expr: string; annotations: Record<string, string> }
const rules: Rule[] = YAML.parse(readFileSync(path.join(PROM, 'alerts.yml'), 'utf8')).groups.flatMap((g: { rules: Rule[] }) => g.rules);

/** GitHub's heading anchors: lower case, spaces to dashes, punctuation dropped. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  for (const m of markdown.matchAll(/^#{1,6}\s+(.+)$/gm)) out.add(m[1].trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-'));
  return out;
}

/** Metric names a PromQL expression reads (everything hf_*), without label matchers' values. */
function metricNames(expr: string): string[] {
  return [...new Set(expr.replace(/"[^"]*"/g, '""').match(/\bhf_[a-z0-9_]+/g) ?? [])];
}

/** Names a scrape exposes, with the series suffixes of histograms and summaries. */
function exposedNames(metricsText: string): Set<string> {
  const out = new Set<string>();
  for (const m of metricsText.matchAll(/^# TYPE (\S+) (\w+)$/gm)) {
    out.add(m[1]);
    if (m[2] === 'histogram') for (const s of ['_bucket', '_count', '_sum']) out.add(m[1] + s);
    if (m[2] === 'summary') for (const s of ['_count', '_sum']) out.add(m[1] + s);
  }
  return out;
}

describe('alert rules (deploy/prometheus/alerts.yml)', () => {
  const node = useNode();

  itPromtool('promtool check rules: clean', () => {
    const r = spawnSync('promtool', ['check', 'rules', path.join(PROM, 'alerts.yml')], { encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`).toMatch(new RegExp(`SUCCESS: ${rules.length} rules found`));
    expect(r.status).toBe(0);
  });

  itPromtool('promtool test rules alerts.test.yml: passes', () => {
    const r = spawnSync('promtool', ['test', 'rules', 'alerts.test.yml'], { cwd: PROM, encoding: 'utf8' });
    expect({ status: r.status, out: `${r.stdout}${r.stderr}` }).toEqual({ status: 0, out: expect.stringContaining('SUCCESS') });
  });

  it('every alert has a runbook_url pointing at its own section of deploy/RUNBOOK.md', () => {
    const sections = anchors(readFileSync(path.join(ROOT, 'deploy/RUNBOOK.md'), 'utf8'));
    expect(rules.length).toBeGreaterThan(15);
    for (const r of rules) {
      expect({ alert: r.alert, runbook_url: r.annotations.runbook_url }).toEqual({ alert: r.alert, runbook_url: `deploy/RUNBOOK.md#${r.alert.toLowerCase()}` });
      expect({ alert: r.alert, documented: sections.has(r.alert.toLowerCase()) }).toEqual({ alert: r.alert, documented: true });
    }
  });

  it('alert and dashboard expressions read only metrics a live node exposes', async () => {
    const text = String((await api(node().url, 'GET', '/metrics')).body);
    const exposed = exposedNames(text);
    expect(exposed).toContain('hf_redis_connected');
    const dashboard = readFileSync(path.join(ROOT, 'deploy/grafana/dashboard.json'), 'utf8');
    const exprs = [...rules.map((r) => r.expr), ...[...dashboard.matchAll(/"expr":\s*"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string)];
    expect(exprs.length).toBeGreaterThan(rules.length);
    const missing = exprs.flatMap((e) => metricNames(e)).filter((n) => !exposed.has(n));
    expect([...new Set(missing)]).toEqual([]);
  });
});
