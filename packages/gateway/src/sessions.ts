import { ErrorCode } from '@harmonyflow/protocol';
import { canAccess, type Principal } from './auth/tokens';
import { AppError, notFound, quotaExceeded, storeOverloaded, tooLarge } from './errors';
import type { Metrics } from './metrics';
import type { MutationRequest, MutationResult, SessionHead, SessionStore, Snapshot } from './store/types';

export type OkMutation = Extract<MutationResult, { status: 'ok' }>;

/** The stored snapshot as HTTP bodies show it (SPEC §8: ISO timestamps). */
export function snapshotView(s: Snapshot) {
  return {
    session_id: s.sessionId,
    user_id: s.userId,
    version: s.version,
    epoch: s.epoch,
    state_data: s.state,
    device_id: s.deviceId,
    app_version: s.appVersion,
    created_at: new Date(s.createdAt).toISOString(),
    updated_at: new Date(s.updatedAt).toISOString(),
    expires_at: new Date(s.expiresAt).toISOString(),
  };
}

/**
 * The one path every mutation takes, HTTP or WebSocket: the store's atomic mutate, with outcomes
 * other than success turned into AppErrors whose codes both transports map the same way.
 */
export class SessionService {
  constructor(
    readonly store: SessionStore,
    private readonly metrics: Metrics,
    /** This process's incarnation id: the origin of every write it makes. */
    readonly instance: string,
    /** STORE_BACKLOG_LIMIT_MS (0: never refuse). */
    private readonly backlogLimitMs = 0,
  ) {}

  async mutate(req: Omit<MutationRequest, 'originNode'>, source: 'http' | 'ws'): Promise<OkMutation> {
    // A store that fell this far behind (Redis stalled, or this node sending faster than it
    // answers) gets no more changes until it catches up: one refused now is cleanly not applied,
    // one queued behind the backlog could time out and still be applied after its writer was told
    // it failed.
    const started = performance.now();
    if (this.backlogLimitMs > 0) {
      const behind = this.store.backlogMs(started);
      if (behind > this.backlogLimitMs) {
        this.metrics.writesShed.inc({ source });
        throw storeOverloaded(Math.round(behind));
      }
    }
    let result: MutationResult;
    try {
      // Field by field, not `{ ...req, originNode }`: a spread copy of requests of several shapes
      // (HTTP, WebSocket) took V8's slow property paths, here and in every store read of it after.
      // `satisfies` names every field of MutationRequest, so one added later cannot be dropped here.
      result = await this.store.mutate({
        sessionId: req.sessionId, actor: req.actor, ownerId: req.ownerId, op: req.op, expectVersion: req.expectVersion,
        baseVersion: req.baseVersion, deviceId: req.deviceId, appVersion: req.appVersion, originNode: this.instance,
        originConn: req.originConn, correlationId: req.correlationId, mutationId: req.mutationId,
      } satisfies Record<keyof MutationRequest, unknown>);
    } catch (err) {
      this.metrics.mutateDuration('error').observe((performance.now() - started) / 1000);
      throw err;
    }
    this.metrics.mutateDuration(result.status).observe((performance.now() - started) / 1000);
    switch (result.status) {
      case 'ok':
        if (!result.duplicate) {
          this.metrics.write(source, req.op.op).inc();
          this.store.incrCounter('writes');
        }
        return result;
      case 'not_found':
        throw notFound('session not found');
      case 'too_large':
        throw tooLarge(`state would be ${result.bytes} bytes, above the limit`);
      case 'not_a_number':
        throw new AppError(ErrorCode.VALIDATION_FAILED, 400, `value at "${result.key}" is not a number`, {
          details: [{ path: result.key, message: 'INCREMENT needs a number' }],
        });
      case 'quota_exceeded':
        throw quotaExceeded('too many live sessions for this user');
      case 'conflict':
        throw new AppError(ErrorCode.VERSION_CONFLICT, 409, 'version conflict', {
          current_version: result.currentVersion,
          ...(result.conflictingKeys && result.conflictingKeys.length > 0 ? { conflicting_keys: result.conflictingKeys } : {}),
          server_state: result.state,
        });
    }
  }

  /** The snapshot if `who` may see it; 404 otherwise (no existence leak). */
  async read(sessionId: string, who: Principal): Promise<Snapshot> {
    const end = this.metrics.storeOps.startTimer({ op: 'get' });
    const snap = await this.store.get(sessionId).finally(() => end({ outcome: 'ok' }));
    if (!snap || !canAccess(who, snap.userId)) throw notFound('session not found');
    this.store.incrCounter('reads');
    return snap;
  }

  /** Owner, version and epoch if `who` may act on the session; 404 otherwise. */
  async authorize(sessionId: string, who: Principal): Promise<SessionHead> {
    const head = await this.store.head(sessionId);
    if (!head || !canAccess(who, head.userId)) throw notFound('session not found');
    return head;
  }
}

