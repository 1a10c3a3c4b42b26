import { randomFillSync } from 'node:crypto';

/**
 * 64 fresh random bits as 16 hex characters, drawn from a pool refilled 4 KiB at a time: every
 * write carries one (the epoch of the session it may create, lua/lib.lua hf_new_epoch), so one
 * crypto call per write would be wasted on the writes that create nothing.
 */
const pool = Buffer.alloc(4096);
let offset = pool.length;

export function randomSeed(): string {
  if (offset + 8 > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  offset += 8;
  return pool.toString('hex', offset - 8, offset);
}
