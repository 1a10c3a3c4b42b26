import type { Envelope } from '../envelope';
import { SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO, type Subprotocol } from '../messageTypes';
import { decodeJson, encodeJson } from './json';
import { decodeProto, encodeProto } from './proto';
import { decodeFailure, type DecodeResult } from './result';
import { errorText } from './jsonText';

export * from './result';
export { MAX_JSON_DEPTH, exceedsJsonDepth, parseJsonText, type ParsedJson } from './jsonText';
export { encodeJson, decodeJson } from './json';
export { encodeProto, decodeProto, protoRoot, EnvelopeType, PAYLOAD_FIELD_OFFSET } from './proto';

/** A wire codec for one WebSocket subprotocol. */
export interface Codec {
  /** The subprotocol this codec speaks. */
  readonly name: Subprotocol;
  /** True when frames are binary (send with `isBinary`), false for text frames. */
  readonly binary: boolean;
  /** Encodes an envelope into one frame (`string` for text codecs, `Uint8Array` for binary). */
  encode(env: Envelope): string | Uint8Array;
  /** Decodes one frame as received from the socket. Never throws. */
  decode(data: string | ArrayBuffer | Uint8Array): DecodeResult;
}

// fatal: invalid UTF-8 in a frame is a bad frame, not U+FFFD-laden data.
let utf8: { decode(input: ArrayBuffer | Uint8Array): string } | undefined;

function bytesToText(data: ArrayBuffer | Uint8Array): string {
  utf8 ??= new TextDecoder('utf-8', { fatal: true });
  return utf8.decode(data);
}

/** JSON codec (`harmonyflow.v1.json`, text frames). A binary frame is read as UTF-8 JSON. */
export const jsonCodec: Codec = {
  name: SUBPROTOCOL_JSON,
  binary: false,
  encode: encodeJson,
  decode(data) {
    if (typeof data === 'string') return decodeJson(data);
    let text: string;
    try {
      text = bytesToText(data);
    } catch (e) {
      return decodeFailure('invalid_message', `frame is not UTF-8: ${errorText(e)}`);
    }
    return decodeJson(text);
  },
};

/** Protobuf codec (`harmonyflow.v1.proto`, binary frames). A text frame is `invalid_message`. */
export const protoCodec: Codec = {
  name: SUBPROTOCOL_PROTO,
  binary: true,
  encode: encodeProto,
  decode(data) {
    if (typeof data === 'string') return decodeFailure('invalid_message', 'expected a binary frame');
    if (data instanceof Uint8Array) return decodeProto(data);
    if (data instanceof ArrayBuffer) return decodeProto(new Uint8Array(data));
    return decodeFailure('invalid_message', 'frame is not binary');
  },
};

/**
 * The codec for a negotiated subprotocol: `harmonyflow.v1.proto` → {@link protoCodec}; anything
 * else (including none) → {@link jsonCodec}, the default.
 */
export function codecFor(subprotocol: Subprotocol | string | null | undefined): Codec {
  return subprotocol === SUBPROTOCOL_PROTO ? protoCodec : jsonCodec;
}

/**
 * Picks the subprotocol to accept from a `Sec-WebSocket-Protocol` request header (comma-separated,
 * client preference order). No header (or an empty one) → `harmonyflow.v1.json`, the default;
 * offers that include neither HarmonyFlow subprotocol → `null` (the caller decides whether to
 * reject the upgrade).
 */
export function negotiateSubprotocol(header: string | null | undefined): Subprotocol | null {
  if (!header) return SUBPROTOCOL_JSON;
  let offered = false;
  for (const part of header.split(',')) {
    const p = part.trim();
    if (!p) continue;
    offered = true;
    if (p === SUBPROTOCOL_JSON || p === SUBPROTOCOL_PROTO) return p;
  }
  return offered ? null : SUBPROTOCOL_JSON;
}
