import type { Envelope } from '../envelope';

/** Why a frame could not be decoded; both are also WS ERROR codes (SPEC §5). */
export type DecodeErrorCode = 'invalid_message' | 'unknown_type';

/** A decode failure. `correlation_id` is set when the frame carried one that could be read. */
export interface DecodeFailure {
  ok: false;
  code: DecodeErrorCode;
  message: string;
  correlation_id?: string;
}

/** Outcome of decoding one frame. Decoders never throw: any bad input yields `ok: false`. */
export type DecodeResult = { ok: true; envelope: Envelope } | DecodeFailure;

/** Builds a failure result (for callers that reject a decoded frame with the same shape). */
export function decodeFailure(code: DecodeErrorCode, message: string, correlationId?: string): DecodeFailure {
  const r: DecodeFailure = { ok: false, code, message };
  if (correlationId !== undefined) r.correlation_id = correlationId;
  return r;
}
