import type { WebSocket } from 'uWebSockets.js';
import type { DeviceLeftReason, UpdateFrame } from '@harmonyflow/protocol';

/** AUTH fields that came as query parameters of the upgrade (`?token=…&device_id=…`). */
export interface QueryAuth {
  token: string;
  device_id: string;
  session_id?: string;
  device_type?: string;
  device_name?: string;
  os_version?: string;
  app_version?: string;
  last_version?: number;
  last_epoch?: string;
}

export interface HeldFrame {
  /** A copy: uWS reuses the message's ArrayBuffer once its callback returns. */
  readonly data: Buffer;
  readonly isBinary: boolean;
}

/**
 * Per-connection state (uWS user data). Kept flat and small: it is multiplied by every
 * connection, and no closures hang off it — timers are one sweep per node, not one per socket.
 */
export interface Conn {
  readonly id: number;
  /** The socket, set on open: the hub walks Conns, so a delivery costs no getUserData() call. */
  ws: WS | null;
  /** Protobuf subprotocol (binary frames) instead of JSON text. */
  readonly binary: boolean;
  readonly openedAt: number;
  authed: boolean;
  authInFlight: boolean;
  /**
   * The first authentication is in flight (until AUTH_SUCCESS or the failure has gone out, not
   * just until the session is claimed): frames that arrive meanwhile are held in `held` and
   * replayed as they came once it settles, so nothing is answered before AUTH_SUCCESS. A re-AUTH
   * holds nothing: the connection is authenticated throughout.
   */
  holding: boolean;
  held: HeldFrame[] | null;
  closed: boolean;
  userId: string;
  admin: boolean;
  sessionId: string;
  /** The session's owner (who re-creates it if its data is lost under this connection). */
  ownerId: string;
  deviceId: string;
  tokenExpiresAt: number;
  expiryNotified: boolean;
  lastSeen: number;
  /** Traffic since the last presence touch. */
  active: boolean;
  /** Counted as a connection in the presence registry (false once silent past the timeout). */
  counted: boolean;
  /** Highest session version this connection has been given (or skipped as its own write). */
  lastVersion: number;
  /** The epoch `lastVersion` belongs to. */
  epoch: string;
  /** Bus frames held back while a snapshot or replay is being prepared; null when live. */
  pending: UpdateFrame[] | null;
  /**
   * The lowest mutation id of this connection refused unapplied (RefusedUnappliedError), 0 if
   * none: later ids wait until it is sent again (see stateUpdate).
   */
  refusedMutationId: number;
  /** A SNAPSHOT_REQUEST came while a catch-up was under way: sent once that one finishes. */
  snapshotWanted: boolean;
  /** Slow consumer: deltas are skipped until drain, then one fresh snapshot is sent. */
  stale: boolean;
  /** The last send() reported buffered bytes: check the buffer before the next delivery. */
  backpressured: boolean;
  bucket: number;
  bucketAt: number;
  limitedAt: number;
  dropped: number;
  strikes: number;
  leaveReason: DeviceLeftReason | null;
  query: QueryAuth | null;
}

/**
 * uWS copies user data's properties onto its socket object; with our ~30 fields that pushes it into
 * dictionary mode (~1.6 KB each). One property pointing at a plain `Conn` keeps both objects compact.
 */
export interface Slot {
  readonly c: Conn;
}
export type WS = WebSocket<Slot>;

export function connOf(ws: WS): Conn {
  return ws.getUserData().c;
}

let nextId = 1;

export function newConn(binary: boolean, query: QueryAuth | null, now: number, burst: number): Conn {
  return {
    id: nextId++,
    ws: null,
    binary,
    openedAt: now,
    authed: false,
    authInFlight: false,
    holding: false,
    held: null,
    closed: false,
    userId: '',
    admin: false,
    sessionId: '',
    ownerId: '',
    deviceId: '',
    tokenExpiresAt: 0,
    expiryNotified: false,
    lastSeen: now,
    active: false,
    counted: false,
    lastVersion: 0,
    epoch: '',
    pending: null,
    refusedMutationId: 0,
    snapshotWanted: false,
    stale: false,
    backpressured: false,
    bucket: burst,
    bucketAt: now,
    limitedAt: 0,
    dropped: 0,
    strikes: 0,
    leaveReason: null,
    query,
  };
}
