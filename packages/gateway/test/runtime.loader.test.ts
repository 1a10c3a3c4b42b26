import { readFileSync } from 'node:fs';
import path from 'node:path';
import { CANDIDATES, loadUws, uwsBuild, uwsLoadError, UwsUnavailableError, type RuntimeFacts } from '../src/uwsRuntime';

const node20Old: RuntimeFacts = { platform: 'linux', arch: 'x64', abi: '115', nodeVersion: 'v20.20.0', glibc: '2.36' };

/** A stub `require`: only the listed binaries "load"; records what was attempted. */
function loader(loadable: string[]) {
  const attempts: string[] = [];
  const load = (file: string) => {
    attempts.push(file);
    if (!loadable.some((b) => file.endsWith(b))) throw new Error(`Cannot load ${file}: version 'GLIBC_2.38' not found`);
    return { App: () => undefined };
  };
  const resolve = (id: string) => `/nm/${id}`;
  return { load, resolve, attempts };
}

describe('uWebSockets.js loader', () => {
  it('on this machine: loaded a native build and reports it', () => {
    expect(uwsLoadError).toBeNull();
    expect(uwsBuild).not.toBeNull();
    expect(uwsBuild!.binary).toMatch(new RegExp(`uws_${process.platform}_${process.arch}_${process.versions.modules}\\.node$`));
  });

  it('Node 20 on glibc 2.36: skips the glibc 2.38 build without trying it, loads the trufflesuite binary', () => {
    const l = loader(['binaries/uws_linux_x64_115.node']);
    const r = loadUws(node20Old, l.load, l.resolve);
    expect(r.build.name).toBe('@trufflesuite/uws-js-unofficial@20.30.0');
    expect(l.attempts).toEqual(['/nm/uWebSockets.js/binaries/uws_linux_x64_115.node']);
  });

  it('Node 24 on glibc 2.39: the btc-vision build', () => {
    const l = loader(['uwebsockets.js/uws_linux_arm64_137.node']);
    const r = loadUws({ ...node20Old, arch: 'arm64', abi: '137', nodeVersion: 'v24.1.0', glibc: '2.39' }, l.load, l.resolve);
    expect(r.build).toEqual({ name: '@btc-vision/uwebsockets.js@20.57.0', binary: '/nm/@btc-vision/uwebsockets.js/uws_linux_arm64_137.node' });
  });

  it('Node 20 where the newer build fails to load (optional dependency missing): falls back to trufflesuite', () => {
    const l = loader(['binaries/uws_darwin_arm64_115.node']);
    const r = loadUws({ ...node20Old, platform: 'darwin', arch: 'arm64', glibc: null }, l.load, l.resolve);
    expect(r.build.name).toBe('@trufflesuite/uws-js-unofficial@20.30.0');
    expect(l.attempts).toHaveLength(2);
  });

  it.each([
    ['Node 22 on glibc 2.36', { ...node20Old, abi: '127', nodeVersion: 'v22.11.0' }, /needs glibc >= 2\.38, this system has 2\.36.*no binary for ABI 127 \(has Node 16\/18\/20\)/],
    ['Node 24 on musl (Alpine)', { ...node20Old, abi: '137', nodeVersion: 'v24.1.0', glibc: null }, /needs glibc >= 2\.38, this system has no glibc/],
    ['Node 26', { ...node20Old, abi: '147', glibc: '2.41', nodeVersion: 'v26.0.0' }, /no binary for ABI 147 \(has Node 20\/22\/24\/25\)/],
  ])('%s: a clear error naming the runtime, what was tried and the support matrix', (_name, facts, why) => {
    const l = loader([]);
    let err: unknown;
    try {
      loadUws(facts, l.load, l.resolve);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UwsUnavailableError);
    expect((err as UwsUnavailableError).code).toBe('uws_unavailable');
    const msg = (err as Error).message;
    expect(msg).toContain(`Node ${facts.nodeVersion} (ABI ${facts.abi})`);
    expect(msg).toMatch(why);
    expect(msg).toContain('pure-JS fallback is not supported');
    expect(l.attempts).toEqual([]);
  });

  it('a binary that is present but does not load is reported with its loader message', () => {
    const l = loader([]);
    expect(() => loadUws(node20Old, l.load, l.resolve)).toThrow(/@trufflesuite\/uws-js-unofficial@20\.30\.0: Cannot load .*GLIBC_2\.38/);
  });

  it('every candidate is tried in order: newest build first', () => {
    expect(CANDIDATES.map((c) => c.name)).toEqual(['@btc-vision/uwebsockets.js@20.57.0', '@trufflesuite/uws-js-unofficial@20.30.0']);
  });

  it('the Dockerfile base image is one where a native build loads for the Node it ships', () => {
    const dockerfile = readFileSync(path.resolve(__dirname, '../../../deploy/docker/Dockerfile'), 'utf8');
    const m = /^ARG NODE_IMAGE=node:(\d+)-(\w+)-slim$/m.exec(dockerfile);
    expect(m).not.toBeNull();
    const abiOfNode: Record<string, string> = { '20': '115', '22': '127', '24': '137', '25': '141' };
    const glibcOfDebian: Record<string, string> = { bookworm: '2.36', trixie: '2.41' };
    const facts: RuntimeFacts = { platform: 'linux', arch: 'x64', abi: abiOfNode[m![1]], nodeVersion: `v${m![1]}`, glibc: glibcOfDebian[m![2]] };
    expect(facts.abi).toBeDefined();
    expect(facts.glibc).toBeDefined();
    expect(CANDIDATES.filter((c) => c.unsuitable(facts) === null).map((c) => c.name)).not.toEqual([]);
    // Node 20 is end-of-life: the image ships a maintained LTS.
    expect(Number(m![1])).toBeGreaterThanOrEqual(22);
  });
});
