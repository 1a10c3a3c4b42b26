import { readFileSync } from 'node:fs';
import path from 'node:path';
import { gatewayNodeFlags, spawnNode } from '@harmonyflow/testkit';

/**
 * The V8 flags the service runs with live in three launchers that cannot share a file (the
 * entry's shebang, `npm start`, the image's CMD; NODE_OPTIONS refuses one of them): they must agree,
 * and the gateways tests and benchmarks spawn must run with them.
 */
const root = path.resolve(__dirname, '../../..');

describe('runtime flags', () => {
  const flags = gatewayNodeFlags();

  it('the entry names some, and npm start and the image pass the same', () => {
    expect(flags.length).toBeGreaterThan(0);
    expect(readFileSync(path.join(root, 'packages/gateway/src/main.ts'), 'utf8').split('\n', 1)[0]).toBe(`#!/usr/bin/env -S node ${flags.join(' ')}`);
    const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`npm run build && node ${flags.join(' ')} packages/gateway/dist/main.js`);
    const cmd = /^CMD (\[.*\])$/m.exec(readFileSync(path.join(root, 'deploy/docker/Dockerfile'), 'utf8'))!;
    expect(JSON.parse(cmd[1])).toEqual(['node', ...flags, 'packages/gateway/dist/main.js']);
  });

  it('a spawned gateway runs with them', async () => {
    const node = await spawnNode();
    try {
      const argv = readFileSync(`/proc/${node.proc.pid}/cmdline`, 'utf8').split('\0');
      expect(argv).toEqual(expect.arrayContaining(flags));
    } finally {
      node.kill('SIGTERM');
      await node.exited;
    }
  });
});
