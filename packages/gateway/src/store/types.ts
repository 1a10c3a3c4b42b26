import type { JsonObject, JsonValue } from '@harmonyflow/protocol';

/** One state change. Every HTTP and WS mutation is expressed as exactly one of these. */
export type StateOp =
  /** Replace the whole state (snapshot write, conflict `client_wins`). Receivers get a snapshot. */
  | { readonly op: 'replace'; readonly state: JsonObject }
  /** Set/delete top-level keys (incremental update). Receivers get one PATCH update. */
  | { readonly op: 'patch'; readonly changes: JsonObject; readonly deleted: readonly string[] }
  /** Like patch, but receivers get the resulting full snapshot (conflict `merge`). */
  | { readonly op: 'merge'; readonly changes: JsonObject }
  | { readonly op: 'set'; readonly key: string; readonly value: JsonValue }
  | { readonly op: 'delete'; readonly key: string }
  | { readonly op: 'incr'; readonly key: string; readonly delta: number };

export interface Actor {
  readonly userId: string;
  readonly admin: boolean;
}

export interface MutationRequest {
  readonly sessionId: string;
  readonly actor: Actor;
  /** Owner of the session if this write creates it (body `user_id` for admins, else `actor.userId`). */
  readonly ownerId: string;
  readonly op: StateOp;
  /** The version this write must produce (snapshot `version`): conflict unless current+1. */
  readonly expectVersion?: number;
  /**
   * The version the client's change was based on. Equal to current → apply; older → apply only if
   * no touched key changed after it (`rebased`), else conflict listing those keys.
   */
  readonly baseVersion?: number;
  readonly deviceId?: string;
  readonly appVersion?: string;
  /** Who wrote it, so the origin connection does not get its own update back. */
  readonly originNode: string;
  readonly originConn?: number;
  /** With `deviceId`: a retry with the same pair within 5 minutes is acknowledged, not re-applied. */
  readonly correlationId?: string;
}

export type MutationResult =
  | {
      readonly status: 'ok';
      readonly version: number;
      readonly created: boolean;
      readonly rebased: boolean;
      /** INCREMENT: the resulting value. */
      readonly value?: JsonValue;
      /** True when this was an idempotent retry answered from the earlier result. */
      readonly duplicate: boolean;
      readonly updatedAt: number;
      readonly createdAt: number;
      /** The session's owner (its first writer). */
      readonly userId: string;
      readonly deviceId: string | null;
      readonly appVersion: string | null;
      /** `merge`: the resulting whole state (what was written, not a re-read). */
      readonly state?: JsonObject;
    }
  | {
      readonly status: 'conflict';
      readonly currentVersion: number;
      readonly conflictingKeys?: string[];
      readonly state: JsonObject;
    }
  /** The session belongs to another user (callers answer 404: no existence leak). */
  | { readonly status: 'not_found' }
  /** INCREMENT of a value that is not a number, or a result that is not finite. */
  | { readonly status: 'not_a_number'; readonly key: string }
  /** The state would exceed MAX_STATE_BYTES. */
  | { readonly status: 'too_large'; readonly bytes: number };

export interface Snapshot {
  readonly sessionId: string;
  readonly userId: string;
  readonly version: number;
  readonly state: JsonObject;
  readonly deviceId: string | null;
  readonly appVersion: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly expiresAt: number;
}

export interface SessionSummary {
  readonly sessionId: string;
  readonly userId: string;
  readonly version: number;
  readonly updatedAt: number;
}

export interface Page<T> {
  readonly items: T[];
  readonly nextCursor: string | null;
}

export type RefreshOutcome = 'ok' | 'reused' | 'revoked';

export type HandoffOutcome =
  | { readonly status: 'ok'; readonly handoff: HandoffRecord }
  | { readonly status: 'used' }
  | { readonly status: 'not_found' };

export interface HandoffRecord {
  readonly token: string;
  readonly sessionId: string;
  readonly sourceDevice: string;
  readonly targetDevice: string;
  readonly version: number;
  readonly state: JsonObject;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/**
 * Durable session state shared by every node. Guarantees:
 * - `mutate` is atomic: version check, write, version bump, per-key versions, TTL refresh, update
 *   log append and the bus publish happen as one step, so bus order equals version order.
 * - Versions of a session are 1, 2, 3… with no gaps; a session claimed but never written is at 0.
 * - Everything of a session expires `ttlSeconds` after its last write (sliding).
 * Throws StoreUnavailableError when the backing store cannot be reached; never half-writes.
 */
export interface SessionStore {
  readonly kind: 'memory' | 'redis';
  mutate(req: MutationRequest): Promise<MutationResult>;
  /** The snapshot, or null if it does not exist (ownership is the caller's check). */
  get(sessionId: string): Promise<Snapshot | null>;
  /** Owner and version only: cheap existence/ownership check. */
  head(sessionId: string): Promise<{ userId: string; version: number } | null>;
  /**
   * Creates an empty session (version 0) owned by `userId` unless it exists. Returns the owner and
   * version afterwards; the session becomes the user's most recent.
   */
  claim(sessionId: string, userId: string): Promise<{ userId: string; version: number; created: boolean }>;
  /** The user's most recently written (or claimed) session id, if any is alive. */
  latestSessionOf(userId: string): Promise<string | null>;
  listSessions(limit: number, cursor: string | null): Promise<Page<SessionSummary>>;
  countSessions(): Promise<number>;

  /** Updates logged after `afterVersion`, in order; null when the log no longer covers the gap. */
  updatesSince(sessionId: string, afterVersion: number): Promise<Uint8Array[] | null>;

  /** Records a refresh token's use. `reused` (already used) revokes the whole family. */
  useRefreshToken(jti: string, family: string, ttlSeconds: number): Promise<RefreshOutcome>;

  createHandoff(record: HandoffRecord): Promise<void>;
  /** Single use, atomically: the first call gets the record, later ones `used`. */
  consumeHandoff(sessionId: string, token: string): Promise<HandoffOutcome>;

  /** Cluster-wide counters (writes/reads), incremented by every node. */
  incrCounter(name: 'writes' | 'reads', by?: number): void;
  counters(): Promise<{ writes: number; reads: number }>;

  ping(): Promise<boolean>;
  close(): Promise<void>;
}
