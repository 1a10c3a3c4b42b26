/**
 * Codes the SDK produces itself. Codes the server sends (SPEC §5: `invalid_token`, `forbidden`,
 * `quota_exceeded`, `version_conflict`, …) reach the app unchanged in {@link SessionError.code}.
 */
export const ClientErrorCode = {
  /** No WebSocket implementation: pass `WebSocket` (e.g. the `ws` package) in Node < 22. */
  NO_WEBSOCKET: 'no_websocket',
  /** An option is missing or malformed (thrown by the constructor or a method). */
  INVALID_ARGUMENT: 'invalid_argument',
  /** The encoded write exceeds the server's `max_message_bytes`; nothing was queued or sent. */
  PAYLOAD_TOO_LARGE: 'payload_too_large',
  /** `close()` was called before the write was acknowledged (it stays queued in storage). */
  CLOSED: 'closed',
  /** The device was removed from the session (close 4000); the client does not reconnect. */
  KICKED: 'kicked',
  /** The server closed for protocol abuse (4400); the client does not reconnect. */
  PROTOCOL_ERROR: 'protocol_error',
  /** The connection closed and `reconnect.enabled` is false. */
  DISCONNECTED: 'disconnected',
  /** An HTTP helper was called before the session id is known (give `sessionId` or connect first). */
  NO_SESSION: 'no_session',
  /** The storage adapter failed to save a write; the write was not queued. */
  STORAGE_FAILED: 'storage_failed',
  /** `token()` threw or returned something other than a non-empty string. */
  TOKEN_FAILED: 'token_failed',
  /** An HTTP helper got a non-2xx answer without an `error` code in its body. */
  HTTP_ERROR: 'http_error',
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/**
 * Every failure the SDK reports: a stable `code` to branch on (never parse `message`), and
 * `details` with whatever the server sent along (`current_version`, `conflicting_keys`, an HTTP
 * `status`, …).
 */
export class SessionError extends Error {
  override readonly name = 'SessionError';
  constructor(readonly code: string, message: string, readonly details: Record<string, unknown> = {}) {
    super(message);
  }
}
