import { CloseCode, ErrorCode, MessageType, type Envelope } from '@harmonyflow/protocol';
import { AppError } from '../errors';

/** HTTP-flavoured error codes mapped to the WS ERROR vocabulary of SPEC §5. */
const WS_CODE: Record<string, string> = {
  [ErrorCode.VALIDATION_FAILED]: ErrorCode.INVALID_MESSAGE,
  [ErrorCode.INVALID_JSON]: ErrorCode.INVALID_MESSAGE,
  [ErrorCode.INVALID_SESSION_ID]: ErrorCode.INVALID_MESSAGE,
  [ErrorCode.NOT_FOUND]: ErrorCode.FORBIDDEN,
  [ErrorCode.UNAUTHORIZED]: ErrorCode.NOT_AUTHENTICATED,
};

export function errorEnvelope(code: string, message: string, correlationId?: string, extra?: Record<string, unknown>): Envelope {
  return {
    type: MessageType.ERROR,
    timestamp: Date.now(),
    correlation_id: correlationId,
    payload: { code, message, ...(correlationId ? { correlation_id: correlationId } : {}), ...extra },
  };
}

/** Any thrown value → an ERROR envelope (unknown errors become `internal`, details not leaked). */
export function errorFromThrown(err: unknown, correlationId?: string): { env: Envelope; known: boolean } {
  if (err instanceof AppError) {
    const extra: Record<string, unknown> = {};
    if (err.extra?.current_version !== undefined) extra.current_version = err.extra.current_version;
    if (err.extra?.conflicting_keys !== undefined) extra.conflicting_keys = err.extra.conflicting_keys;
    const code = WS_CODE[err.code] ?? err.code;
    return { env: errorEnvelope(code, err.message, correlationId, extra), known: true };
  }
  return { env: errorEnvelope(ErrorCode.INTERNAL, 'internal error', correlationId), known: false };
}

export { CloseCode };
