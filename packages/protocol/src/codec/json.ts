import type { Envelope } from '../envelope';
import { MAX_MESSAGE_TYPE, MessageType } from '../messageTypes';
import { decodeFailure, type DecodeResult } from './result';
import { MAX_JSON_DEPTH, isPlainObject, parseJsonText } from './jsonText';

/**
 * Encodes an envelope as a JSON text frame (subprotocol `harmonyflow.v1.json`).
 * The envelope is already the wire shape, so this is one `JSON.stringify`: encode once, send
 * the same string to every recipient. Absent (`undefined`) optional fields are omitted.
 *
 * @throws if the envelope holds something JSON cannot carry (BigInt, cycles, absurd nesting);
 *   encoders trust their caller, only decoders face hostile input.
 */
export function encodeJson(env: Envelope): string {
  return JSON.stringify(env);
}

const STRING_FIELDS = ['session_id', 'user_id', 'device_id'] as const;

/**
 * Decodes one JSON text frame. Never throws.
 *
 * Checks the envelope shape, not the payload contents (those belong to the handler of each
 * type):
 * - not JSON, not an object, nested deeper than `maxDepth`, `type` missing → `invalid_message`;
 * - `type` present but not an integer in 0..18 (e.g. `99`, `"x"`) → `unknown_type`;
 * - `session_id`, `user_id`, `device_id`, `correlation_id` must be strings (`null` = absent);
 * - `timestamp` must be a finite number; absent/`null` decodes as `0` (the decoder does not
 *   stamp frames);
 * - `payload` must be an object; absent/`null` decodes as `{}`. The parsed payload object is
 *   returned as is (`__proto__` keys stay inert own properties).
 * Unknown top-level keys are dropped. Failures carry the frame's `correlation_id` when it was
 * readable, so the ERROR reply can echo it.
 *
 * @param text the frame's text
 * @param maxDepth bound on array/object nesting of the whole frame (default {@link MAX_JSON_DEPTH})
 */
export function decodeJson(text: string, maxDepth: number = MAX_JSON_DEPTH): DecodeResult {
  if (typeof text !== 'string') return decodeFailure('invalid_message', 'frame is not text');
  const parsed = parseJsonText(text, maxDepth);
  if (!parsed.ok) return decodeFailure('invalid_message', parsed.message);
  const raw = parsed.value;
  if (!isPlainObject(raw)) return decodeFailure('invalid_message', 'envelope must be a JSON object');

  const corr = raw.correlation_id;
  let correlationId: string | undefined;
  if (typeof corr === 'string') correlationId = corr;
  else if (corr !== undefined && corr !== null) return decodeFailure('invalid_message', 'correlation_id must be a string');

  const type = raw.type;
  if (type === undefined || type === null) return decodeFailure('invalid_message', 'type is required', correlationId);
  if (typeof type !== 'number' || !Number.isInteger(type) || type < 0 || type > MAX_MESSAGE_TYPE) {
    return decodeFailure('unknown_type', `unknown message type ${describe(type)}`, correlationId);
  }

  let timestamp = 0;
  const ts = raw.timestamp;
  if (typeof ts === 'number' && Number.isFinite(ts)) timestamp = ts;
  else if (ts !== undefined && ts !== null) return decodeFailure('invalid_message', 'timestamp must be a number (Unix ms)', correlationId);

  let payload: Record<string, unknown>;
  const p = raw.payload;
  if (p === undefined || p === null) payload = {};
  else if (isPlainObject(p)) payload = p;
  else return decodeFailure('invalid_message', 'payload must be an object', correlationId);

  const envelope: Envelope = { type: type as MessageType, timestamp, payload };
  for (const k of STRING_FIELDS) {
    const v = raw[k];
    if (typeof v === 'string') envelope[k] = v;
    else if (v !== undefined && v !== null) return decodeFailure('invalid_message', `${k} must be a string`, correlationId);
  }
  if (correlationId !== undefined) envelope.correlation_id = correlationId;
  return { ok: true, envelope };
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 32 ? v.slice(0, 32) + '…' : v);
  if (typeof v === 'number') return String(v);
  return Array.isArray(v) ? 'array' : typeof v;
}
