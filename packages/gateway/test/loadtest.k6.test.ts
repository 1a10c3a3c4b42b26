import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import * as acorn from 'acorn';
import WebSocket from 'ws';
import { useNode } from '@harmonyflow/testkit';

/**
 * k6 cannot be installed here, so its scripts are checked three ways: parsed as ES modules with
 * only k6 and local imports; their init context evaluated against stub k6 modules (options,
 * thresholds); and the WebSocket scripts' VU code run for a few VUs against a live node through a
 * small k6/websockets + k6/timers shim over `ws` (k6 runs the same code on its own event loop).
 */
const K6_DIR = path.resolve(__dirname, '../../../loadtest/k6');
const SCRIPTS = readdirSync(K6_DIR).filter((f) => f.endsWith('.js')).sort();
const K6_MODULES = new Set(['k6', 'k6/http', 'k6/metrics', 'k6/execution', 'k6/websockets', 'k6/timers', 'k6/encoding', 'k6/crypto', 'k6/data']);
const K6_BUILTIN_METRICS = new Set(['checks', 'http_req_duration', 'http_req_failed', 'http_reqs', 'dropped_iterations', 'iteration_duration', 'ws_connecting', 'ws_session_duration', 'ws_sessions']);

function parse(file: string): acorn.Program {
  return acorn.parse(readFileSync(path.join(K6_DIR, file), 'utf8'), { ecmaVersion: 2020, sourceType: 'module' });
}

function importsOf(ast: acorn.Program): acorn.ImportDeclaration[] {
  return ast.body.filter((n): n is acorn.ImportDeclaration => n.type === 'ImportDeclaration');
}

function exportedNames(ast: acorn.Program): string[] {
  const names: string[] = [];
  for (const n of ast.body) {
    if (n.type === 'ExportDefaultDeclaration') names.push('default');
    if (n.type !== 'ExportNamedDeclaration' || !n.declaration) continue;
    const d = n.declaration;
    if (d.type === 'VariableDeclaration') for (const v of d.declarations) names.push((v.id as acorn.Identifier).name);
    else names.push((d as acorn.FunctionDeclaration).id!.name);
  }
  return names;
}

// ---------------------------------------------------------------- a minimal k6 runtime

interface Samples { [metric: string]: { value: number; tags?: Record<string, string> }[] }

class Runtime {
  readonly samples: Samples = {};
  readonly checks: { name: string; ok: boolean }[] = [];
  readonly metricNames = new Set<string>();
  currentVu = 0;
  private readonly cache = new Map<string, Record<string, any>>();
  private readonly pending = new Set<unknown>();
  private idle: Array<() => void> = [];

  constructor(private readonly env: Record<string, string>) {}

  private add(name: string, value: number, tags?: Record<string, string>) {
    (this.samples[name] ??= []).push({ value, tags });
  }

  /** k6 keeps a VU's iteration alive while it has timers or sockets: so does this. */
  private hold(h: unknown) {
    this.pending.add(h);
  }
  private release(h: unknown) {
    this.pending.delete(h);
    if (this.pending.size === 0) for (const f of this.idle.splice(0)) f();
  }
  /**
   * What k6 does to a VU at the end of a `ramping-vus` stage: its sockets are closed and its
   * timers dropped without calling back into the script.
   */
  interrupt(): void {
    for (const h of [...this.pending]) {
      if (h instanceof Object && 'interrupt' in h) (h as { interrupt(): void }).interrupt();
      else clearTimeout(h as NodeJS.Timeout);
      this.release(h);
    }
  }
  whenIdle(): Promise<void> {
    return this.pending.size === 0 ? Promise.resolve() : new Promise((r) => this.idle.push(r));
  }

  private k6Module(name: string): Record<string, any> {
    const rt = this;
    const metric = (kind: string) =>
      class {
        constructor(readonly name: string) {
          rt.metricNames.add(name);
        }
        add(v: number | boolean, tags?: Record<string, string>) {
          rt.add(this.name, Number(v), tags);
        }
        get kind() {
          return kind;
        }
      };
    switch (name) {
      case 'k6':
        return {
          check: (v: unknown, sets: Record<string, (x: unknown) => boolean>) => {
            for (const [n, f] of Object.entries(sets)) rt.checks.push({ name: n, ok: !!f(v) });
            return true;
          },
          sleep: () => undefined,
        };
      case 'k6/metrics':
        return { Counter: metric('counter'), Rate: metric('rate'), Trend: metric('trend'), Gauge: metric('gauge') };
      case 'k6/execution':
        return { default: { vu: { get idInTest() { return rt.currentVu; } }, get test() { return { abort: (m: string) => { throw new Error(`test.abort: ${m}`); } }; } } };
      case 'k6/timers':
        return {
          setTimeout: (f: () => void, ms: number) => {
            const t: NodeJS.Timeout = setTimeout(() => {
              rt.release(t);
              f();
            }, ms);
            rt.hold(t);
            return t;
          },
          clearTimeout: (t: NodeJS.Timeout) => {
            clearTimeout(t);
            rt.release(t);
          },
          setInterval: (f: () => void, ms: number) => {
            const t = setInterval(f, ms);
            rt.hold(t);
            return t;
          },
          clearInterval: (t: NodeJS.Timeout) => {
            clearInterval(t);
            rt.release(t);
          },
        };
      case 'k6/websockets':
        return { WebSocket: rt.webSocketClass() };
      case 'k6/http':
        return { default: { get: () => { throw new Error('k6/http is not emulated'); }, post: () => { throw new Error('k6/http is not emulated'); } } };
      default:
        throw new Error(`no stub for ${name}`);
    }
  }

  /** The browser-style WebSocket of k6/websockets, over `ws`. */
  private webSocketClass() {
    const rt = this;
    return class K6WebSocket {
      onopen: ((e: object) => void) | null = null;
      onmessage: ((e: { data: string }) => void) | null = null;
      onerror: ((e: { error: string }) => void) | null = null;
      onclose: ((e: { code: number }) => void) | null = null;
      private readonly ws: WebSocket;
      constructor(url: string, protocols: null | string | string[], params: { headers?: Record<string, string> } = {}) {
        const headers = { ...(params.headers ?? {}) };
        const sub = headers['Sec-WebSocket-Protocol'];
        delete headers['Sec-WebSocket-Protocol'];
        this.ws = new WebSocket(url, protocols ?? (sub ? [sub] : []), { headers });
        rt.hold(this);
        this.ws.on('open', () => this.onopen?.({}));
        this.ws.on('message', (d) => this.onmessage?.({ data: d.toString() }));
        this.ws.on('error', (err) => this.onerror?.({ error: err.message }));
        this.ws.on('close', (code) => {
          this.onclose?.({ code });
          rt.release(this);
        });
      }
      get readyState() {
        return this.ws.readyState;
      }
      send(s: string) {
        if (this.ws.readyState !== WebSocket.OPEN) throw new Error('InvalidStateError');
        this.ws.send(s);
      }
      close(code?: number) {
        this.ws.close(code ?? 1000);
      }
      interrupt() {
        this.onopen = this.onmessage = this.onerror = this.onclose = null;
        this.ws.close(1000);
      }
    };
  }

  /** Loads a script the way k6's init context does: imports resolved, `export`s collected. */
  load(file: string): Record<string, any> {
    const key = path.resolve(K6_DIR, file);
    const cached = this.cache.get(key);
    if (cached) return cached;
    const src = readFileSync(key, 'utf8');
    const ast = acorn.parse(src, { ecmaVersion: 2020, sourceType: 'module' });
    const edits: { start: number; end: number; text: string }[] = [];
    const tail: string[] = [];
    ast.body.forEach((n, i) => {
      if (n.type === 'ImportDeclaration') {
        const m = `__m${i}`;
        const binds = n.specifiers.map((s) =>
          s.type === 'ImportDefaultSpecifier' ? `const ${s.local.name} = ${m}.default;`
            : s.type === 'ImportNamespaceSpecifier' ? `const ${s.local.name} = ${m};`
              : `const ${s.local.name} = ${m}[${JSON.stringify((s.imported as acorn.Identifier).name)}];`);
        edits.push({ start: n.start, end: n.end, text: `const ${m} = __import(${JSON.stringify(n.source.value)}); ${binds.join(' ')}` });
      } else if (n.type === 'ExportNamedDeclaration') {
        if (!n.declaration) throw new Error(`${file}: export lists are not supported by this harness`);
        edits.push({ start: n.start, end: n.declaration.start, text: '' });
        for (const name of exportedNames({ ...ast, body: [n] } as acorn.Program)) tail.push(`__exports.${name} = ${name};`);
      } else if (n.type === 'ExportDefaultDeclaration') {
        edits.push({ start: n.start, end: n.declaration.start, text: '__exports.default = ' });
      }
    });
    let code = src;
    for (const e of edits.sort((a, b) => b.start - a.start)) code = code.slice(0, e.start) + e.text + code.slice(e.end);
    const exports: Record<string, any> = {};
    this.cache.set(key, exports);
    const fn = vm.compileFunction(`${code}\n${tail.join('\n')}`, ['__import', '__exports', '__ENV', 'open'], { filename: key });
    fn(
      (spec: string) => (spec.startsWith('./') ? this.load(spec) : this.k6Module(spec)),
      exports,
      this.env,
      (p: string) => readFileSync(p, 'utf8'),
    );
    return exports;
  }

  values(metric: string): number[] {
    return (this.samples[metric] ?? []).map((s) => s.value);
  }
}

/** Metric names a thresholds object refers to (`name` or `name{tag:value}`). */
function thresholdMetrics(thresholds: Record<string, unknown>): string[] {
  return Object.keys(thresholds).map((k) => k.replace(/\{.*\}$/, ''));
}

// ---------------------------------------------------------------- tests

describe('k6 scripts (loadtest/k6)', () => {
  it('finds the scripts', () => {
    expect(SCRIPTS).toEqual(expect.arrayContaining(['lib.js', 'device.js', 'session-sync.js', 'snapshot-http.js', 'soak-10k.js']));
  });

  it.each(SCRIPTS)('%s: parses as an ES module importing only k6 modules and existing local files', (file) => {
    const ast = parse(file);
    for (const imp of importsOf(ast)) {
      const src = String(imp.source.value);
      if (src.startsWith('./')) {
        expect(existsSync(path.join(K6_DIR, src))).toBe(true);
        const available = exportedNames(parse(src));
        for (const s of imp.specifiers) {
          const wanted = s.type === 'ImportSpecifier' ? (s.imported as acorn.Identifier).name : s.type === 'ImportDefaultSpecifier' ? 'default' : null;
          if (wanted) expect({ from: src, name: wanted, exported: available.includes(wanted) }).toEqual({ from: src, name: wanted, exported: true });
        }
      } else {
        expect({ file, module: src, known: K6_MODULES.has(src) }).toEqual({ file, module: src, known: true });
      }
    }
  });

  it('no script uses the legacy k6/ws module', () => {
    for (const f of SCRIPTS) expect(importsOf(parse(f)).map((i) => i.source.value)).not.toContain('k6/ws');
  });

  it.each(['session-sync.js', 'snapshot-http.js', 'soak-10k.js'])('%s: init context runs; thresholds only name metrics that exist', (file) => {
    const rt = new Runtime({ TOKEN: 'x' });
    const mod = rt.load(file);
    expect(typeof mod.default).toBe('function');
    expect(Object.keys(mod.options.scenarios)).toHaveLength(1);
    for (const m of thresholdMetrics(mod.options.thresholds)) expect({ metric: m, exists: rt.metricNames.has(m) || K6_BUILTIN_METRICS.has(m) }).toEqual({ metric: m, exists: true });
  });

  it('soak-10k.js: ramps in stages to 10k connections and holds; WRITE_RATE=0 is an idle soak', () => {
    const soak = new Runtime({ TOKEN: 'x' }).load('soak-10k.js').options;
    const s = soak.scenarios.soak;
    expect(s.executor).toBe('ramping-vus');
    expect(s.startVUs).toBe(0);
    expect(s.stages.map((x: { target: number }) => x.target)).toEqual([10000, 10000, 0]);
    expect(s.stages[0].duration).toBe('10m');
    expect(Object.keys(soak.thresholds)).toEqual(expect.arrayContaining(['hf_connect_ok', 'hf_ack_latency', 'hf_error_frames']));
    const idle = new Runtime({ TOKEN: 'x', WRITE_RATE: '0', TARGET_VUS: '500', HOLD: '1h' }).load('soak-10k.js').options;
    expect(idle.scenarios.soak.stages[1]).toEqual({ duration: '1h', target: 500 });
    expect(Object.keys(idle.thresholds)).not.toContain('hf_ack_latency');
    expect(() => new Runtime({ TOKEN: 'x', WRITE_RATE: '-1' }).load('soak-10k.js')).toThrow(/WRITE_RATE must be a number >= 0/);
    expect(() => new Runtime({ TOKEN: 'x', RAMP: 'soon' }).load('soak-10k.js')).toThrow(/RAMP must be a duration/);
    expect(() => new Runtime({}).load('soak-10k.js')).toThrow(/set TOKEN/);
  });

  describe('WebSocket scripts against a live node (VU code through the shim)', () => {
    const n = useNode({ HEARTBEAT_INTERVAL_MS: '300' });

    async function runVus(file: string, env: Record<string, string>, vus: number, stopAfterMs?: number): Promise<Runtime> {
      const rt = new Runtime({ WS_URL: n().wsUrl, TOKEN: await n().token('k6-user'), ...env });
      const mod = rt.load(file);
      const data = mod.setup();
      for (let vu = 1; vu <= vus; vu++) {
        rt.currentVu = vu;
        mod.default(data);
      }
      if (stopAfterMs !== undefined) {
        // ramping-vus ends a VU's iteration by interrupting it.
        await new Promise((r) => setTimeout(r, stopAfterMs));
        rt.interrupt();
      }
      await rt.whenIdle(); // every socket closed and every timer cleared: the iterations ended
      return rt;
    }

    it('soak-10k.js: connects, heartbeats, trickles writes that are ACKed, no error frames', async () => {
      const rt = await runVus('soak-10k.js', { TARGET_VUS: '4', WRITE_RATE: '8', DEVICES_PER_SESSION: '2' }, 4, 1500);
      expect(rt.values('hf_connect_ok')).toEqual([1, 1, 1, 1]);
      expect(rt.values('hf_heartbeat_ok').length).toBeGreaterThanOrEqual(4);
      expect(rt.values('hf_heartbeat_ok').every((v) => v === 1)).toBe(true);
      expect(rt.values('hf_ack_ok').filter((v) => v === 1).length).toBeGreaterThanOrEqual(4);
      expect(rt.values('hf_ack_latency').length).toBeGreaterThanOrEqual(4);
      expect(rt.values('hf_updates_received').length).toBeGreaterThan(0); // the partner device got them
      expect(rt.samples.hf_error_frames).toBeUndefined();
      expect(rt.checks.filter((c) => !c.ok)).toEqual([]);
    });

    it('session-sync.js: pairs measure sync latency, every write ACKed, connections end after HOLD_SECONDS', async () => {
      const rt = await runVus('session-sync.js', { VUS: '2', RATE: '10', HOLD_SECONDS: '1.5', WARMUP_MS: '200' }, 2);
      expect(rt.values('hf_connect_ok')).toEqual([1, 1]);
      expect(rt.values('hf_sync_latency').length).toBeGreaterThan(5);
      expect(rt.values('hf_ack_ok').length).toBeGreaterThan(10);
      expect(rt.values('hf_ack_ok').every((v) => v === 1)).toBe(true);
      expect(rt.samples.hf_error_frames).toBeUndefined();
      expect(rt.samples.hf_server_closes).toBeUndefined(); // the VUs closed, not the server
      expect(rt.checks.filter((c) => !c.ok)).toEqual([]);
    });
  });
});
