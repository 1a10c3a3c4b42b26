import { z } from 'zod';
import { ErrorCode, type JsonObject } from '@harmonyflow/protocol';
import { AppError, badRequest } from '../errors';

/** Deeper state is refused: a recursive JSON walker anywhere downstream must not blow the stack. */
export { MAX_JSON_DEPTH } from '@harmonyflow/protocol';
import { MAX_JSON_DEPTH } from '@harmonyflow/protocol';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

export function requireSessionId(s: string): string {
  if (!isUuid(s)) throw badRequest(ErrorCode.INVALID_SESSION_ID, 'session id must be a UUID');
  return s.toLowerCase();
}

export function parseJson(body: Buffer | null): unknown {
  if (!body || body.length === 0) throw badRequest(ErrorCode.INVALID_JSON, 'request body must be JSON');
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw badRequest(ErrorCode.INVALID_JSON, 'request body is not valid JSON');
  }
}

/** Iterative, so hostile nesting cannot overflow our stack while we measure it. */
export function jsonDepth(v: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length > 0) {
    const [node, d] = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (d > max) max = d;
    if (max > limit) return max;
    if (Array.isArray(node)) for (const x of node) stack.push([x, d + 1]);
    else for (const k of Object.keys(node)) stack.push([(node as Record<string, unknown>)[k], d + 1]);
  }
  return max;
}

/**
 * A JSON object, accepted by reference: zod's record parser would rebuild it with assignments,
 * and `out["__proto__"] = …` would set a prototype instead of storing data.
 */
/**
 * Deepest state object accepted: frames carrying it add two levels (envelope, payload), and every
 * frame we send must stay decodable under the codecs' MAX_JSON_DEPTH.
 */
export const MAX_STATE_DEPTH = MAX_JSON_DEPTH - 2;

export const jsonObject = z.custom<JsonObject>(
  (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && jsonDepth(v, MAX_STATE_DEPTH) <= MAX_STATE_DEPTH,
  { message: `must be a JSON object nested at most ${MAX_STATE_DEPTH} levels` },
);

export const sessionIdField = z.string().regex(UUID_RE, 'must be a UUID').transform((s) => s.toLowerCase());
export const idField = z.string().min(1).max(256);
const shortText = z.string().max(256);

export const snapshotBody = z.object({
  session_id: sessionIdField,
  user_id: idField.optional(),
  state_data: jsonObject,
  device_id: idField.optional(),
  app_version: shortText.optional(),
  version: z.number().int().min(1).optional(),
});

export const incrementalBody = z
  .object({
    session_id: sessionIdField,
    user_id: idField.optional(),
    device_id: idField.optional(),
    app_version: shortText.optional(),
    base_version: z.number().int().min(0).optional(),
    changes: jsonObject.optional(),
    deleted_keys: z.array(z.string().max(1024)).max(10000).optional(),
  })
  .superRefine((b, ctx) => {
    const changed = b.changes ? Object.keys(b.changes) : [];
    if (changed.length === 0 && (b.deleted_keys?.length ?? 0) === 0) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['changes'], message: 'changes or deleted_keys must name at least one key' });
    }
    const set = new Set(changed);
    for (const k of b.deleted_keys ?? []) {
      if (set.has(k)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['deleted_keys'], message: `key "${k}" is both changed and deleted` });
    }
  });

export const resolveBody = z.object({
  session_id: sessionIdField,
  user_id: idField.optional(),
  device_id: idField.optional(),
  client_version: z.number().int().min(0).optional(),
  client_state: jsonObject,
  resolution_strategy: z.string(),
});

export const refreshBody = z.object({ refresh_token: z.string().min(1).max(8192) });

/** Parses with a schema or throws 400 `validation_failed` with per-field `details`. */
export function validate<T extends z.ZodTypeAny>(schema: T, value: unknown): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  throw new AppError(ErrorCode.VALIDATION_FAILED, 400, 'request failed validation', {
    details: r.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
  });
}
