import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { configEnvNames } from './configEnvNames';

const ROOT = path.resolve(__dirname, '../../..');
const K8S = path.join(ROOT, 'deploy/k8s');
const HAVE_KUBECTL = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).status === 0;
if (!HAVE_KUBECTL) console.warn('SKIPPED deploy.k8s: kubectl is not installed (it renders the kustomizations)');
const describeIf = HAVE_KUBECTL ? describe : describe.skip;

type Obj = Record<string, any>;

function render(dir: string): Obj[] {
  const r = spawnSync('kubectl', ['kustomize', path.join(K8S, dir)], { encoding: 'utf8', timeout: 30_000 });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed:\n${r.stderr}`);
  return YAML.parseAllDocuments(r.stdout).map((d) => d.toJS()).filter(Boolean);
}

/** Read by Node itself, not by config.ts. */
const RUNTIME_ENV = new Set(['NODE_OPTIONS']);

function only(objs: Obj[], kind: string, name?: string): Obj {
  const found = objs.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name || o.metadata.name.startsWith(`${name}-`)));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name ?? ''}, found ${found.length}`);
  return found[0];
}

function gatewayContainer(objs: Obj[]): Obj {
  const d = only(objs, 'Deployment', 'harmonyflow-gateway');
  return d.spec.template.spec.containers.find((c: Obj) => c.name === 'gateway');
}

/** The env var names the gateway container gets: `env` entries and every key of `envFrom` sources present in the render. */
function envNamesOf(objs: Obj[], c: Obj): string[] {
  const names: string[] = (c.env ?? []).map((e: Obj) => e.name);
  for (const src of c.envFrom ?? []) {
    const ref = src.configMapRef ?? src.secretRef;
    const kind = src.configMapRef ? 'ConfigMap' : 'Secret';
    const o = objs.find((x) => x.kind === kind && x.metadata.name === ref.name);
    if (!o && !ref.optional) throw new Error(`envFrom ${kind} ${ref.name} is not in the render`);
    names.push(...Object.keys(o?.data ?? {}), ...Object.keys(o?.stringData ?? {}));
  }
  return names;
}

function containerPort(c: Obj, port: string | number): number | undefined {
  const p = (c.ports ?? []).find((x: Obj) => x.name === port || x.containerPort === port);
  return p?.containerPort;
}

describeIf('Kubernetes manifests (kubectl kustomize)', () => {
  const rendered: Record<string, Obj[]> = {};
  beforeAll(() => {
    for (const dir of ['base', 'overlays/dev', 'overlays/production']) rendered[dir] = render(dir);
  });
  const configNames = configEnvNames();

  it('config.ts is read as expected (the env-name check below is real)', () => {
    for (const n of ['REDIS_URL', 'REDIS_PASSWORD', 'JWT_SECRET', 'SNAPSHOT_TTL_SECONDS', 'NODE_ENV', 'NODE_ID']) expect(configNames).toContain(n);
    expect(configNames).not.toContain('REDIS_PASSWRD');
  });

  describe.each(['base', 'overlays/dev', 'overlays/production'])('%s', (dir) => {
    it('probes use /ready and /health on a port the container exposes; the Service targets it too', () => {
      const objs = rendered[dir];
      const c = gatewayContainer(objs);
      expect(c.readinessProbe.httpGet.path).toBe('/ready');
      expect(c.livenessProbe.httpGet.path).toBe('/health');
      expect(c.startupProbe.httpGet.path).toBe('/health');
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) expect(containerPort(c, probe.httpGet.port)).toBe(8080);
      const svc = only(objs, 'Service', 'harmonyflow-gateway');
      for (const p of svc.spec.ports) expect(containerPort(c, p.targetPort)).toBe(8080);
      // The port the container exposes is the one the gateway listens on.
      const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('harmonyflow-gateway-config'));
      expect(cm.data.SERVER_ADDR).toBe(':8080');
    });

    it('every env var name given to the gateway is one config.ts reads', () => {
      const names = envNamesOf(rendered[dir], gatewayContainer(rendered[dir]));
      expect(names.length).toBeGreaterThan(8);
      expect(names.filter((n) => !configNames.has(n) && !RUNTIME_ENV.has(n))).toEqual([]);
    });

    it('no `replicas` on a Deployment an HPA scales', () => {
      const objs = rendered[dir];
      const hpas = objs.filter((o) => o.kind === 'HorizontalPodAutoscaler');
      expect(hpas.length).toBeGreaterThan(0);
      for (const h of hpas) {
        const target = only(objs, h.spec.scaleTargetRef.kind, h.spec.scaleTargetRef.name);
        expect(target.spec.replicas).toBeUndefined();
      }
    });

    it('every secretKeyRef of the gateway names the Secret of the render, with the key when it is present', () => {
      const objs = rendered[dir];
      const secrets = objs.filter((o) => o.kind === 'Secret');
      for (const e of gatewayContainer(objs).env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (!ref) continue;
        expect(ref.name).toMatch(/^harmonyflow-gateway-secrets/);
        const s = secrets.find((x) => x.metadata.name === ref.name);
        if (s && !ref.optional) expect(Object.keys(s.data ?? {})).toContain(ref.key);
      }
    });
  });

  it('base: no Secret and no Prometheus Operator objects', () => {
    const kinds = rendered.base.map((o) => o.kind);
    expect(kinds).not.toContain('Secret');
    expect(kinds).not.toContain('ServiceMonitor');
    expect(kinds).not.toContain('PrometheusRule');
  });

  it('dev: one persistent Redis 7 with noeviction and a generated Secret the gateway and Redis both use', () => {
    const objs = rendered['overlays/dev'];
    const sts = only(objs, 'StatefulSet', 'harmonyflow-redis');
    expect(sts.spec.replicas).toBe(1);
    const redis = sts.spec.template.spec.containers[0];
    expect(redis.image).toMatch(/^redis:7\.\d+/);
    const args: string[] = redis.args;
    expect(args[args.indexOf('--maxmemory-policy') + 1]).toBe('noeviction');
    expect(args[args.indexOf('--appendonly') + 1]).toBe('yes');
    expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe(redis.volumeMounts.find((m: Obj) => m.mountPath === '/data').name);
    const secret = only(objs, 'Secret', 'harmonyflow-gateway-secrets');
    expect(secret.metadata.name).toMatch(/^harmonyflow-gateway-secrets-[a-z0-9]{6,}$/); // generated, content-hashed
    expect(Object.keys(secret.data).sort()).toEqual(['JWT_REFRESH_SECRET', 'JWT_SECRET', 'REDIS_PASSWORD', 'REDIS_URL']);
    const refs = [...gatewayContainer(objs).env, ...redis.env].map((e: Obj) => e.valueFrom?.secretKeyRef?.name).filter(Boolean);
    expect(new Set(refs)).toEqual(new Set([secret.metadata.name]));
    // The gateway's REDIS_URL points at the StatefulSet's Service.
    const url = new URL(Buffer.from(secret.data.REDIS_URL, 'base64').toString());
    expect(url.hostname).toBe(only(objs, 'Service', 'harmonyflow-redis').metadata.name);
    expect(url.password).toBe('');
  });

  it('production: no Secret, PDB, NetworkPolicy on the gateway port, anti-affinity, and a PrometheusRule equal to alerts.yml', () => {
    const objs = rendered['overlays/production'];
    expect(objs.map((o) => o.kind)).not.toContain('Secret');
    const selector = { 'app.kubernetes.io/name': 'harmonyflow-gateway' };
    expect(only(objs, 'PodDisruptionBudget').spec.selector.matchLabels).toEqual(selector);
    const np = only(objs, 'NetworkPolicy');
    expect(np.spec.podSelector.matchLabels).toEqual(selector);
    const c = gatewayContainer(objs);
    expect(np.spec.ingress.flatMap((r: Obj) => r.ports).map((p: Obj) => containerPort(c, p.port))).toEqual([8080]);
    const egressPorts = np.spec.egress.flatMap((r: Obj) => r.ports.map((p: Obj) => p.port));
    expect(egressPorts).toEqual(expect.arrayContaining([53, 6379]));
    const pod = only(objs, 'Deployment', 'harmonyflow-gateway').spec.template.spec;
    expect(pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchLabels).toEqual(selector);
    const rule = only(objs, 'PrometheusRule');
    const alerts = YAML.parse(readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8'));
    // Out of date after editing alerts.yml? Run `npm run deploy:rules`.
    expect(rule.spec.groups).toEqual(alerts.groups);
    expect(only(objs, 'ServiceMonitor').spec.endpoints[0]).toMatchObject({ port: 'http', path: '/metrics' });
  });
});
