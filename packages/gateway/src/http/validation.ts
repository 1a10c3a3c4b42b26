import { z } from 'zod';
import { ErrorCode, isUuid, isValidId, jsonDepth, MAX_ID_LENGTH, MAX_STATE_DEPTH, stateKeyProblem, type JsonObject } from '@harmonyflow/protocol';
import { AppError, badRequest } from '../errors';

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

/**
 * A state object (snapshot, changes, client state), accepted by reference: zod's record parser
 * would rebuild it with assignments, and `out["__proto__"] = …` would set a prototype instead of
 * storing data. Its top-level keys are state keys (SPEC §9 "Keys").
 */
export const jsonObject = z
  .custom<JsonObject>(
    (v) => v !== null && typeof v === 'object' && !Array.isArray(v) && jsonDepth(v, MAX_STATE_DEPTH) <= MAX_STATE_DEPTH,
    { message: `must be a JSON object nested at most ${MAX_STATE_DEPTH} levels` },
  )
  .superRefine((obj, ctx) => {
    for (const k of Object.keys(obj)) {
      const problem = stateKeyProblem(k);
      if (problem) {
        ctx.addIssue({ code: z.ZodIssueCode.custom, path: [k], message: problem });
        return;
      }
    }
  });

const stateKey = z.string().superRefine((k, ctx) => {
  const problem = stateKeyProblem(k);
  if (problem) ctx.addIssue({ code: z.ZodIssueCode.custom, message: problem });
});

export const sessionIdField = z.string().refine(isUuid, 'must be a UUID').transform((s) => s.toLowerCase());
/** Device ids (SPEC §9): 1–128 characters. */
export const deviceIdField = z.string().min(1).max(MAX_ID_LENGTH).refine(isValidId, 'must be well-formed Unicode');
export const userIdField = z.string().min(1).max(256);
const shortText = z.string().max(256);

export const snapshotBody = z.object({
  session_id: sessionIdField,
  user_id: userIdField.optional(),
  state_data: jsonObject,
  device_id: deviceIdField.optional(),
  app_version: shortText.optional(),
  version: z.number().int().min(1).optional(),
});

export const incrementalBody = z
  .object({
    session_id: sessionIdField,
    user_id: userIdField.optional(),
    device_id: deviceIdField.optional(),
    app_version: shortText.optional(),
    base_version: z.number().int().min(0).optional(),
    changes: jsonObject.optional(),
    // Repeats name one key: deduplicated.
    deleted_keys: z.array(stateKey).max(10000).transform((keys) => [...new Set(keys)]).optional(),
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
  user_id: userIdField.optional(),
  device_id: deviceIdField.optional(),
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
