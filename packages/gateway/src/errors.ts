import { ErrorCode } from '@harmonyflow/protocol';

/**
 * An error with a stable `code` (SPEC §4/§5) and the HTTP status it maps to. `extra` fields are
 * merged into the HTTP error body (e.g. `current_version`, `server_state`).
 */
export class AppError extends Error {
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }
}

export const badRequest = (code: string, message: string, extra?: Record<string, unknown>) => new AppError(code, 400, message, extra);
export const unauthorized = (message = 'missing or invalid bearer token') => new AppError(ErrorCode.UNAUTHORIZED, 401, message);
export const forbidden = (message: string) => new AppError(ErrorCode.FORBIDDEN, 403, message);
export const notFound = (message = 'not found') => new AppError(ErrorCode.NOT_FOUND, 404, message);
export const tooLarge = (message: string) => new AppError(ErrorCode.PAYLOAD_TOO_LARGE, 413, message);
export const quotaExceeded = (message: string) => new AppError(ErrorCode.QUOTA_EXCEEDED, 429, message);

/**
 * A state change refused before it was sent, so certainly not applied: the store is too far
 * behind (SessionService), or an earlier change of the same connection was refused so.
 */
export class RefusedUnappliedError extends AppError {
  constructor(message: string) {
    super(ErrorCode.STORE_UNAVAILABLE, 503, message);
  }
}

export const storeOverloaded = (behindMs: number) =>
  new RefusedUnappliedError(`session store ${behindMs} ms behind: the change was not applied, retry shortly`);

/** Raised by stores when Redis cannot be reached; HTTP 503, WS ERROR store_unavailable. */
export class StoreUnavailableError extends AppError {
  constructor(cause?: unknown) {
    super(ErrorCode.STORE_UNAVAILABLE, 503, 'session store unavailable, retry shortly');
    if (cause) (this as { cause?: unknown }).cause = cause;
  }
}
