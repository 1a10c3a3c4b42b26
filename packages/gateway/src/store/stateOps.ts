import type { StateOp } from './types';

/**
 * Pure pieces of the mutation semantics used by the in-memory store; `lua/mutate.lua` implements
 * the same rules in its own terms, and the SessionStore contract suite holds both to them.
 */

/** Keys a change touches: what the rebase check compares against per-key versions. */
export function touchedKeys(op: StateOp): string[] {
  switch (op.op) {
    case 'set':
    case 'delete':
    case 'incr':
      return [op.key];
    case 'patch':
      return [...Object.keys(op.changes), ...op.deleted];
    case 'merge':
    case 'replace':
      return Object.keys(op.op === 'merge' ? op.changes : op.state);
  }
}

export type VersionCheck =
  | { ok: true; rebased: boolean }
  | { ok: false; conflictingKeys?: string[] };

/**
 * Decides whether a change may apply at `current`.
 * - `expectVersion`: must be exactly current+1 (snapshot writes).
 * - `baseVersion` = current: apply; older: apply only if no touched key changed after it; newer
 *   than current: the client claims a future it cannot have seen → conflict.
 */
export function checkVersion(
  current: number,
  expectVersion: number | undefined,
  baseVersion: number | undefined,
  touched: readonly string[],
  keyVersion: (key: string) => number,
): VersionCheck {
  if (expectVersion !== undefined && expectVersion !== current + 1) return { ok: false };
  if (baseVersion === undefined || baseVersion === current) return { ok: true, rebased: false };
  if (baseVersion > current) return { ok: false, conflictingKeys: [] };
  const conflicting = touched.filter((k) => keyVersion(k) > baseVersion);
  if (conflicting.length > 0) return { ok: false, conflictingKeys: [...new Set(conflicting)] };
  return { ok: true, rebased: true };
}

/**
 * Conflict strategies of POST /session/conflict/resolve. Each is one store operation:
 * server_wins writes nothing, client_wins is `replace`, merge is `merge` (client wins per key).
 */
export type ResolutionStrategy = 'server_wins' | 'client_wins' | 'merge';
export const RESOLUTION_STRATEGIES: readonly ResolutionStrategy[] = ['server_wins', 'client_wins', 'merge'];

/** An incremented number's text; lua/mutate.lua hf_number_text writes the same, so both stores agree. */
export function formatNumber(n: number): string {
  return JSON.stringify(n);
}
