import { SUBPROTOCOL_JSON, decodeFailure, decodeJson, encodeJson, type Codec } from '@harmonyflow/protocol/lite';

// fatal: invalid UTF-8 is a bad frame, not U+FFFD-laden data.
let utf8: { decode(input: ArrayBuffer | Uint8Array): string } | undefined;

/**
 * The JSON codec (`harmonyflow.v1.json`, text frames), the SDK's default. It is built on
 * `@harmonyflow/protocol/lite` so the main entry never loads protobufjs; the binary codec is
 * `protoCodec` from `@harmonyflow/client/proto`.
 */
export const jsonCodec: Codec = {
  name: SUBPROTOCOL_JSON,
  binary: false,
  encode: encodeJson,
  decode(data) {
    if (typeof data === 'string') return decodeJson(data);
    utf8 ??= new TextDecoder('utf-8', { fatal: true });
    try {
      return decodeJson(utf8.decode(data));
    } catch {
      return decodeFailure('invalid_message', 'frame is not UTF-8');
    }
  },
};

/** Size of a frame on the wire: UTF-8 bytes for text, bytes for binary. */
export function frameBytes(frame: string | Uint8Array): number {
  if (typeof frame !== 'string') return frame.byteLength;
  let n = 0;
  for (let i = 0; i < frame.length; i++) {
    const c = frame.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < frame.length) {
      n += 4; // a surrogate pair is one 4-byte character
      i++;
    } else n += 3;
  }
  return n;
}
