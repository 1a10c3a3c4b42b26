import { SUBPROTOCOL_JSON, decodeFailure, decodeJson, encodeJson, utf8Length, type Codec } from '@harmonyflow/protocol/lite';

/**
 * The JSON codec (`harmonyflow.v1.json`), the SDK's default. It is built on
 * `@harmonyflow/protocol/lite` so the main entry never loads protobufjs; the binary codec is
 * `protoCodec` from `@harmonyflow/client/proto`. The subprotocol's frames are text frames, which
 * browsers and the `ws` package both hand over as strings.
 */
export const jsonCodec: Codec = {
  name: SUBPROTOCOL_JSON,
  binary: false,
  encode: encodeJson,
  decode: (data) => (typeof data === 'string' ? decodeJson(data) : decodeFailure('invalid_message', 'expected a text frame')),
};

/** Size of a frame on the wire: UTF-8 bytes for text, bytes for binary. */
export function frameBytes(frame: string | Uint8Array): number {
  return typeof frame === 'string' ? utf8Length(frame) : frame.byteLength;
}
