/**
 * Wire message types. Numbering is the seed's (0–14) plus HarmonyFlow's additions (15–18);
 * it must match `proto/harmonyflow/v1/session.proto` and SPEC §5 (a test checks all three).
 */
export enum MessageType {
  UNKNOWN = 0,
  HEARTBEAT = 1,
  HEARTBEAT_ACK = 2,
  SNAPSHOT_REQUEST = 3,
  SNAPSHOT_RESPONSE = 4,
  STATE_UPDATE = 5,
  ERROR = 6,
  AUTH = 7,
  AUTH_SUCCESS = 8,
  AUTH_FAILURE = 9,
  DEVICE_JOINED = 10,
  DEVICE_LEFT = 11,
  DEVICE_LIST = 12,
  BROADCAST = 13,
  ADMIN_UPDATE = 14,
  STATE_UPDATE_ACK = 15,
  HANDOFF_REQUESTED = 16,
  HANDOFF_COMPLETED = 17,
  RECONNECT = 18,
}

export const MAX_MESSAGE_TYPE = MessageType.RECONNECT;

/** WebSocket subprotocols. JSON is the default when a client offers none. */
export const SUBPROTOCOL_JSON = 'harmonyflow.v1.json';
export const SUBPROTOCOL_PROTO = 'harmonyflow.v1.proto';
export type Subprotocol = typeof SUBPROTOCOL_JSON | typeof SUBPROTOCOL_PROTO;

/**
 * Close codes. 4000 and 1012 invite an immediate reconnect (elsewhere, for 1012);
 * 4401/4403 need a new token or another session first; 4400/4429/1009 mean the client misbehaved.
 */
export const CloseCode = {
  NORMAL: 1000,
  TOO_BIG: 1009,
  /** The server could not keep the connection's stream consistent (a resync failed): resume. */
  INTERNAL: 1011,
  DRAINING: 1012,
  KICKED: 4000,
  PROTOCOL_ABUSE: 4400,
  AUTH: 4401,
  FORBIDDEN: 4403,
  RATE_LIMITED: 4429,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Stable error codes shared by HTTP bodies (`error`) and WS ERROR frames (`code`). */
export const ErrorCode = {
  INVALID_MESSAGE: 'invalid_message',
  UNKNOWN_TYPE: 'unknown_type',
  NOT_AUTHENTICATED: 'not_authenticated',
  FORBIDDEN: 'forbidden',
  VERSION_CONFLICT: 'version_conflict',
  RATE_LIMITED: 'rate_limited',
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  STORE_UNAVAILABLE: 'store_unavailable',
  INTERNAL: 'internal',
  TOKEN_EXPIRED: 'token_expired',
  INVALID_TOKEN: 'invalid_token',
  INVALID_JSON: 'invalid_json',
  VALIDATION_FAILED: 'validation_failed',
  NOT_FOUND: 'not_found',
  UNAUTHORIZED: 'unauthorized',
  HANDOFF_TOKEN_USED: 'handoff_token_used',
  INVALID_SESSION_ID: 'invalid_session_id',
  METHOD_NOT_ALLOWED: 'method_not_allowed',
  NOT_READY: 'not_ready',
  /** MAX_SESSIONS_PER_USER or MAX_HANDOFFS_PER_SESSION reached (HTTP 429, AUTH_FAILURE + close 4429). */
  QUOTA_EXCEEDED: 'quota_exceeded',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** Why a device left a session (DEVICE_LEFT payload `reason`). */
export type DeviceLeftReason = 'disconnected' | 'timeout' | 'kicked' | 'handoff';

export type StateOperation = 'SET' | 'DELETE' | 'INCREMENT' | 'PATCH';
