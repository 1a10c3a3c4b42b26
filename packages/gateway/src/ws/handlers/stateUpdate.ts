import {
  ErrorCode, jsonDepth, MAX_STATE_DEPTH, stateKeyProblem, type Envelope, type JsonValue,
} from '@harmonyflow/protocol';
import { RefusedUnappliedError } from '../../errors';
import type { StateOp } from '../../store/types';
import { connOf, type WS } from '../conn';
import type { WsContext } from '../context';
import { ackEnvelope, ackJson } from '../frames';
import { corked, send, sendEnv } from '../io';

type Parsed = { op: StateOp; baseVersion?: number; mutationId?: number } | { problem: string };

/** Validates a STATE_UPDATE payload into one store operation, or says what is wrong with it. */
export function parseStateUpdate(p: Record<string, unknown>): Parsed {
  const keyProblem = stateKeyProblem(p.key);
  if (keyProblem) return { problem: keyProblem };
  const key = p.key as string;
  const base = p.base_version;
  if (base !== undefined && base !== null && (!Number.isSafeInteger(base) || (base as number) < 0)) return { problem: 'base_version must be a whole number' };
  const mid = p.mutation_id;
  if (mid !== undefined && mid !== null && (!Number.isSafeInteger(mid) || (mid as number) < 1)) return { problem: 'mutation_id must be a positive whole number' };
  let op: StateOp;
  switch (p.operation) {
    case 'SET':
      if (p.value === undefined) return { problem: 'SET needs a value' };
      // A value sits one level below the state, which sits two below the envelope.
      if (jsonDepth(p.value, MAX_STATE_DEPTH - 1) > MAX_STATE_DEPTH - 1) return { problem: `value nested deeper than ${MAX_STATE_DEPTH - 1} levels` };
      op = { op: 'set', key, value: p.value as JsonValue };
      break;
    case 'DELETE':
      op = { op: 'delete', key };
      break;
    case 'INCREMENT': {
      const delta = p.value === undefined || p.value === null ? 1 : p.value;
      if (typeof delta !== 'number' || !Number.isFinite(delta)) return { problem: 'INCREMENT value must be a finite number' };
      op = { op: 'incr', key, delta };
      break;
    }
    default:
      return { problem: 'operation must be SET, DELETE or INCREMENT' };
  }
  return { op, baseVersion: (base as number | null | undefined) ?? undefined, mutationId: (mid as number | null | undefined) ?? undefined };
}

/**
 * STATE_UPDATE (c→s): one store mutation; the writer gets STATE_UPDATE_ACK (with `duplicate`
 * when the write had been processed before), the session's other devices get the change from the
 * bus. Identity of a write: (session, device_id, mutation_id) or (session, device_id, correlation_id);
 * dispatch has refused correlation ids outside SPEC §9's 1-128 characters.
 */
export async function stateUpdate(ctx: WsContext, ws: WS, env: Envelope): Promise<void> {
  const c = connOf(ws);
  const corr = env.correlation_id;
  const parsed = parseStateUpdate(env.payload);
  if ('problem' in parsed) {
    ctx.limits.strike(ws, ErrorCode.INVALID_MESSAGE, parsed.problem, corr);
    return;
  }
  const mid = parsed.mutationId;
  if (mid !== undefined && c.refusedMutationId > 0 && mid > c.refusedMutationId) {
    // A lower id of this connection was refused unapplied. Applied first, this one would raise
    // the device's mark above it, and its retry would then be answered as a duplicate and never
    // applied (SPEC §10): it waits for that one, refused the same way.
    const refused = c.refusedMutationId;
    corked(ws, () => ctx.io.failed(ws, new RefusedUnappliedError(`mutation ${refused} was not applied: send it again before later ones`), corr));
    return;
  }
  // The refused one, sent again, goes to the store now: later ids may follow it (one connection's
  // writes reach the store in order). Refused again, it is noted again below, before the next frame.
  if (mid !== undefined && mid === c.refusedMutationId) c.refusedMutationId = 0;
  ctx.inflight.count++;
  try {
    const r = await ctx.sessions.mutate({
      sessionId: c.sessionId, actor: { userId: c.userId, admin: c.admin }, ownerId: c.ownerId, op: parsed.op,
      baseVersion: parsed.baseVersion, deviceId: c.deviceId, originConn: c.id, correlationId: corr,
      mutationId: mid,
    }, 'ws');
    if (c.closed) return;
    const now = Date.now();
    // One frame, sent uncorked: a cork batches only the sends inside its callback, so around a
    // single send it saves nothing (and uWS asks for one on HTTP responses, not WebSocket sends).
    // The default subprotocol's per-write reply is built as text, no envelope object.
    if (!c.binary) send(ws, ackJson(c.sessionId, corr, r.version, r.value, mid, r.duplicate, now));
    else sendEnv(ws, ackEnvelope(c.sessionId, corr, r.version, r.value, mid, r.duplicate, now));
  } catch (err) {
    if (mid !== undefined && err instanceof RefusedUnappliedError && (c.refusedMutationId === 0 || mid < c.refusedMutationId)) {
      c.refusedMutationId = mid;
    }
    corked(ws, () => ctx.io.failed(ws, err, corr));
  } finally {
    ctx.inflight.count--;
  }
}
