/**
 * @harmonyflow/protocol — the HarmonyFlow wire protocol shared by the gateway and the SDK:
 * message types, close and error codes, the canonical envelope and payload shapes, and the
 * JSON (`harmonyflow.v1.json`) and protobuf (`harmonyflow.v1.proto`) codecs.
 */
// Values by name, types by `export type *`: compiled to CommonJS, every `export *` binding is read
// through one shared getter (`m[k]`), a megamorphic load on each use of each import on the
// gateway's hot path; a named re-export gets a getter of its own that V8 inlines.
export { MessageType, MAX_MESSAGE_TYPE, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO, CloseCode, ErrorCode } from './messageTypes';
export type * from './messageTypes';
export type * from './envelope';
export {
  MAX_JSON_DEPTH, exceedsJsonDepth, parseJsonText, encodeJson, decodeJson, encodeProto, decodeProto, protoRoot, EnvelopeType,
  PAYLOAD_FIELD_OFFSET, jsonCodec, protoCodec, codecFor, negotiateSubprotocol, decodeFailure,
} from './codec';
export type * from './codec';
export { SCHEMA_DESCRIPTOR } from './generated/schema';
export { BusKind, encodeUpdateFrame, encodeControlFrame, decodeBusFrame } from './bus';
export type * from './bus';
export { MAX_ID_LENGTH, MAX_KEY_BYTES, MAX_STATE_DEPTH, isUuid, isValidId, isWellFormed, utf8Length, stateKeyProblem, jsonDepth } from './validate';
export type * from './validate';
