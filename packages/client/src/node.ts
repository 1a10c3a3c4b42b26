import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { StorageLike } from './storage';

/**
 * `@harmonyflow/client/node` — a {@link StorageLike} for Node: one file per key in `dir`
 * (created on first write). A value is written to a temporary file, flushed to disk and renamed
 * over the old one, so after a crash or power loss a key holds its old or its new value, never
 * a torn one. Keys become file names (percent-encoded, dots included, so no key escapes `dir`).
 */
export class FileStorage implements StorageLike {
  constructor(readonly dir: string) {}

  private file(key: string): string {
    return path.join(this.dir, encodeURIComponent(key).replace(/\./g, '%2E') + '.json');
  }

  async getItem(key: string): Promise<string | null> {
    try {
      return await readFile(this.file(key), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async setItem(key: string, value: string): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const target = this.file(key);
    const tmp = `${target}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(value, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, target);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async removeItem(key: string): Promise<void> {
    await rm(this.file(key), { force: true });
  }
}

export type { StorageLike } from './storage';
