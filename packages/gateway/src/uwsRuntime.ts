import path from 'node:path';
import type * as UWS from 'uWebSockets.js';

/**
 * Which uWebSockets.js build runs this process, chosen once at start-up.
 *
 * Two builds are installed (SPEC §1 runs on uWS; README "Runtime support" has the matrix):
 * - `@btc-vision/uwebsockets.js@20.57.0` (optional dependency): native binaries for Node 20, 22,
 *   24 and 25 (ABI 115/127/137/141) on Linux x64/arm64 with glibc ≥ 2.38, macOS and Windows.
 * - `@trufflesuite/uws-js-unofficial@20.30.0` (installed as `uWebSockets.js`): binaries up to
 *   Node 20 (ABI 115) on older glibc too.
 * The first one whose native binary loads wins. Neither package's pure-JS fallback is ever used:
 * it crashes at start-up (`us_socket_local_port` is missing), so when no native binary loads the
 * node refuses to start with `UwsUnavailableError` naming the runtime and what was tried.
 */
export interface RuntimeFacts {
  readonly platform: string;
  readonly arch: string;
  /** `process.versions.modules`, the Node ABI the binary must match. */
  readonly abi: string;
  readonly nodeVersion: string;
  /** glibc version at run time on glibc Linux; null elsewhere (musl, macOS, Windows). */
  readonly glibc: string | null;
}

export interface UwsBuild {
  /** npm package that provided the binary, with its version. */
  readonly name: string;
  /** Absolute path of the loaded `.node` file. */
  readonly binary: string;
}

interface Candidate {
  readonly name: string;
  /** Why this build cannot run here, or null when it is worth trying. */
  unsuitable(f: RuntimeFacts): string | null;
  /** Path of the native binary for these facts (throws MODULE_NOT_FOUND when not installed). */
  binaryPath(f: RuntimeFacts, resolve: (id: string) => string): string;
}

const GLIBC_MIN_BTC = [2, 38] as const;

function glibcAtLeast(v: string | null, min: readonly [number, number]): boolean {
  const m = v ? /^(\d+)\.(\d+)/.exec(v) : null;
  if (!m) return false;
  const [maj, min2] = [Number(m[1]), Number(m[2])];
  return maj > min[0] || (maj === min[0] && min2 >= min[1]);
}

function binaryName(f: RuntimeFacts): string {
  return `uws_${f.platform}_${f.arch}_${f.abi}.node`;
}

export const CANDIDATES: readonly Candidate[] = [
  {
    name: '@btc-vision/uwebsockets.js@20.57.0',
    unsuitable: (f) => {
      if (!['115', '127', '137', '141'].includes(f.abi)) return `no binary for ABI ${f.abi} (has Node 20/22/24/25)`;
      if (f.platform === 'linux' && !glibcAtLeast(f.glibc, GLIBC_MIN_BTC)) {
        return `needs glibc >= ${GLIBC_MIN_BTC.join('.')}, this system has ${f.glibc ?? 'no glibc'}`;
      }
      if (!['linux', 'darwin', 'win32'].includes(f.platform)) return `no binary for ${f.platform}`;
      return null;
    },
    binaryPath: (f, resolve) => path.join(path.dirname(resolve('@btc-vision/uwebsockets.js/package.json')), binaryName(f)),
  },
  {
    name: '@trufflesuite/uws-js-unofficial@20.30.0',
    unsuitable: (f) => (['93', '108', '115'].includes(f.abi) ? null : `no binary for ABI ${f.abi} (has Node 16/18/20)`),
    binaryPath: (f, resolve) => path.join(path.dirname(resolve('uWebSockets.js/package.json')), 'binaries', binaryName(f)),
  },
];

export class UwsUnavailableError extends Error {
  readonly code = 'uws_unavailable';
}

export function currentFacts(): RuntimeFacts {
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return {
    platform: process.platform,
    arch: process.arch,
    abi: process.versions.modules,
    nodeVersion: process.version,
    glibc: header?.glibcVersionRuntime ?? null,
  };
}

/**
 * Loads the first candidate whose native binary loads; `load` is `require` in production and a
 * stub in tests. Throws UwsUnavailableError listing every candidate and why it was passed over.
 */
export function loadUws(
  facts: RuntimeFacts,
  load: (file: string) => unknown,
  resolve: (id: string) => string,
  candidates: readonly Candidate[] = CANDIDATES,
): { module: typeof UWS; build: UwsBuild } {
  const tried: string[] = [];
  for (const c of candidates) {
    const why = c.unsuitable(facts);
    if (why) {
      tried.push(`${c.name}: ${why}`);
      continue;
    }
    try {
      const binary = c.binaryPath(facts, resolve);
      return { module: load(binary) as typeof UWS, build: { name: c.name, binary } };
    } catch (err) {
      tried.push(`${c.name}: ${(err as Error).message.split('\n')[0]}`);
    }
  }
  throw new UwsUnavailableError(
    `no native uWebSockets.js binary loads on Node ${facts.nodeVersion} (ABI ${facts.abi}) ${facts.platform}-${facts.arch}` +
      `${facts.glibc ? ` glibc ${facts.glibc}` : ''}; tried ${tried.join('; ')}. ` +
      'Supported: Node 20 on glibc Linux, or Node 20/22/24/25 on glibc >= 2.38 Linux, macOS and Windows ' +
      '(the pure-JS fallback is not supported). See README "Runtime support".',
  );
}

function loadCurrent(): { module: typeof UWS; build: UwsBuild | null; error: UwsUnavailableError | null } {
  try {
    const r = loadUws(currentFacts(), (file) => require(file), (id) => require.resolve(id));
    return { ...r, error: null };
  } catch (err) {
    if (!(err instanceof UwsUnavailableError)) throw err;
    // Importing never throws, so `main` can print the one clear line; any use of uWS throws it.
    const fail = () => {
      throw err;
    };
    return { module: new Proxy({}, { get: fail }) as typeof UWS, build: null, error: err };
  }
}

const loaded = loadCurrent();

/** uWebSockets.js as loaded (a stub throwing `uwsLoadError` when no native binary loaded). */
export const uws: typeof UWS = loaded.module;
export const uwsBuild: UwsBuild | null = loaded.build;
/** Why uWS is unavailable in this process; `main` exits with it before creating a node. */
export const uwsLoadError: UwsUnavailableError | null = loaded.error;
export const uwsIsNative: boolean = loaded.build !== null && /\[native code\]/.test(Function.prototype.toString.call(loaded.module.App));
