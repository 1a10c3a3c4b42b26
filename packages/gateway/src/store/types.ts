import type { JsonObject, JsonValue } from '@harmonyflow/protocol';
import type { Connected, DeviceDescriptor } from '../presence/types';

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
  /** The writing process (node incarnation id), so the origin connection does not get its own update back. */
  readonly originNode: string;
  readonly originConn?: number;
  /**
   * With `deviceId` and no `mutationId`: a retry with the same pair within 5 minutes is
   * acknowledged, not re-applied, while its record is among the session's newest (at least 64 kept;
   * docs/storage.md). Mutation ids are the exactly-once mechanism (SPEC §10).
   */
  readonly correlationId?: string;
  /**
   * With `deviceId`: strictly increasing per (session, device). A mutation whose id is not above
   * the highest one processed for the device is answered `duplicate` and not applied (SPEC §10).
   */
  readonly mutationId?: number;
}

export type MutationResult =
  | {
      readonly status: 'ok';
      readonly version: number;
      readonly created: boolean;
      readonly rebased: boolean;
      /** INCREMENT: the resulting value. */
      readonly value?: JsonValue;
      /**
       * True when this was a retry answered without applying it: from the earlier result
       * (correlation id), or with the current version (mutation id already processed).
       */
      readonly duplicate: boolean;
      readonly updatedAt: number;
      readonly createdAt: number;
      /** The session's owner (its first writer). */
      readonly userId: string;
      readonly deviceId: string | null;
      readonly appVersion: string | null;
      /** `merge`: the resulting whole state (what was written, not a re-read). */
      readonly state?: JsonObject;
      /** The session's incarnation (SPEC §9). */
      readonly epoch: string;
      /** When the session (every key of it) expires, as of this write. */
      readonly expiresAt: number;
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
  | { readonly status: 'too_large'; readonly bytes: number }
  /** The write would create a session beyond the owner's MAX_SESSIONS_PER_USER. */
  | { readonly status: 'quota_exceeded' };

export interface Snapshot {
  readonly sessionId: string;
  readonly userId: string;
  readonly version: number;
  readonly epoch: string;
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
  readonly epoch: string;
  readonly updatedAt: number;
  readonly expiresAt: number;
}

export interface SessionHead {
  readonly userId: string;
  readonly version: number;
  readonly epoch: string;
}

export type ClaimResult =
  | {
      readonly status: 'ok';
      readonly userId: string;
      readonly version: number;
      readonly epoch: string;
      readonly created: boolean;
      /** Highest mutation id processed for the claiming device (0 if none). */
      readonly lastMutationId: number;
      /**
       * The device's count (see ClaimCount), when the claim was asked to take it and this store
       * did: the user may join, and the device registry lives with the session (Redis). Absent,
       * the device is not counted.
       */
      readonly connected?: Connected;
    }
  | { readonly status: 'quota_exceeded' };

/**
 * PresenceRegistry.connect of the claiming device, to be taken in the same step as the claim when
 * the user may join: one call instead of two where the registry shares the store's backend (one
 * script on Redis, whose registry sits in the session's slot). Stores without one ignore it. The
 * store's clock stamps the record, as it stamps the claim.
 */
export interface ClaimCount {
  readonly device: DeviceDescriptor;
  readonly instance: string;
  /** Read the session too, as the count leaves it (PresenceRegistry.connect's `withSnapshot`). */
  readonly withSnapshot: boolean;
  /** The presence timeout: which devices of the list are online. */
  readonly timeoutMs: number;
}

/** What a resume needs: the updates after a version, within the epoch it belongs to. */
export interface UpdatesSince {
  readonly epoch: string;
  readonly frames: Uint8Array[];
}

export interface StoreLimits {
  /** Sliding lifetime of a session without writes or connected devices. */
  readonly ttlSeconds: number;
  readonly maxStateBytes: number;
  /** Update log entries kept per session for resume (at least; trimmed in batches above it). */
  readonly logLength: number;
  /** Update log bytes kept per session; resume falls back to a snapshot past it. */
  readonly logMaxBytes: number;
  /** Live sessions one user may own; 0 = no limit. */
  readonly maxSessionsPerUser: number;
  /** Live handoff tokens per session; 0 = no limit. */
  readonly maxHandoffsPerSession: number;
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
  readonly epoch: string;
  readonly state: JsonObject;
  readonly createdAt: number;
  readonly expiresAt: number;
}

/**
 * Durable session state shared by every node. Guarantees:
 * - `mutate` is atomic: version check, write, version bump, per-key versions, TTL refresh, update
 *   log append and the bus publish happen as one step, so bus order equals version order.
 * - Versions of a session are 1, 2, 3… with no gaps within one epoch; a session claimed but never
 *   written is at 0. A session created again (after it expired or was lost) gets a new epoch.
 * - Everything of a session expires together, between `ttlSeconds` and 9/8 of it after its last
 *   write, claim or `keepAlive` (the refresh is amortised: at most one per eighth of the TTL).
 * - Storage per session is bounded by its state: the log by entries and bytes, deletions and
 *   dedupe records by count.
 * Throws StoreUnavailableError when the backing store cannot be reached; never half-writes.
 */
export interface SessionStore {
  readonly kind: 'memory' | 'redis';
  mutate(req: MutationRequest): Promise<MutationResult>;
  /** The snapshot, or null if it does not exist (ownership is the caller's check). */
  get(sessionId: string): Promise<Snapshot | null>;
  /** Owner, version and epoch only: cheap existence/ownership check. */
  head(sessionId: string): Promise<SessionHead | null>;
  /** `head` of many sessions at once, in the order given (null where one does not exist). */
  heads(sessionIds: readonly string[]): Promise<Array<SessionHead | null>>;
  /**
   * Creates an empty session (version 0, a new epoch) owned by `userId` unless it exists, within
   * the user's session quota. When the user may join it (owner, or `admin`), its expiry is
   * refreshed, it becomes the owner's most recent, and `deviceId`'s mutation mark is returned;
   * anyone else only learns the owner (callers refuse them). With `count`, a store that holds the
   * device registry also counts the device there when the user may join (ClaimResult.connected).
   */
  claim(sessionId: string, userId: string, deviceId?: string, admin?: boolean, count?: ClaimCount): Promise<ClaimResult>;
  /** The user's most recently written (or claimed) live session id, if any. */
  latestSessionOf(userId: string): Promise<string | null>;
  /** Live sessions owned by the user (at most MAX_SESSIONS_PER_USER of them). */
  sessionsOfUser(userId: string): Promise<SessionSummary[]>;
  /**
   * Live sessions, a page at a time. Every session alive for the whole walk is listed at least
   * once; one whose expiry is refreshed meanwhile may be listed twice.
   */
  listSessions(limit: number, cursor: string | null): Promise<Page<SessionSummary>>;
  countSessions(): Promise<number>;
  /**
   * Keeps sessions with connected devices alive (SPEC §9): refreshes their expiry when it is due.
   * Cheap to call for many sessions at once; callers batch.
   */
  keepAlive(sessionIds: readonly string[]): Promise<void>;

  /**
   * Updates logged after `afterVersion` of `epoch` (any epoch when null), in order, with the
   * session's epoch; null when the log no longer covers the gap or the epoch is another one.
   */
  updatesSince(sessionId: string, afterVersion: number, epoch: string | null): Promise<UpdatesSince | null>;

  /** Records a refresh token's use. `reused` (already used) revokes the whole family. */
  useRefreshToken(jti: string, family: string, ttlSeconds: number): Promise<RefreshOutcome>;

  /** Stores a handoff token unless the session already holds MAX_HANDOFFS_PER_SESSION live ones. */
  createHandoff(record: HandoffRecord): Promise<'ok' | 'quota_exceeded'>;
  /** Single use, atomically: the first call gets the record, later ones `used`. */
  consumeHandoff(sessionId: string, token: string): Promise<HandoffOutcome>;

  /**
   * How long, in ms, the oldest command this node sent to the store has been waiting for its
   * answer at `now` (performance.now()), 0 when none is: state changes, reads, claims and
   * presence alike, which all wait in the same line. A store that answers in-process is never
   * behind.
   */
  backlogMs(now: number): number;

  /** Cluster-wide counters (writes/reads), incremented by every node. */
  incrCounter(name: 'writes' | 'reads', by?: number): void;
  counters(): Promise<{ writes: number; reads: number }>;

  ping(): Promise<boolean>;
  close(): Promise<void>;
}
