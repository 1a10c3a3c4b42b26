/**
 * @harmonyflow/protocol — the HarmonyFlow wire protocol shared by the gateway and the SDK:
 * message types, close and error codes, the canonical envelope and payload shapes, and the
 * JSON (`harmonyflow.v1.json`) and protobuf (`harmonyflow.v1.proto`) codecs.
 */
export * from './messageTypes';
export * from './envelope';
export * from './codec';
export { SCHEMA_DESCRIPTOR } from './generated/schema';
export * from './bus';
export * from './validate';
