/**
 * `@harmonyflow/protocol/lite` — the part of the protocol a browser client needs: message types,
 * close and error codes, envelope and payload shapes, and the JSON codec functions. It pulls in
 * neither protobufjs nor msgpackr, so bundles built on it stay small; the protobuf codec is at
 * `@harmonyflow/protocol/codec`, the internal bus frames only at the package root.
 */
export * from './messageTypes';
export * from './envelope';
export * from './codec/result';
export { encodeJson, decodeJson } from './codec/json';
export type { Codec } from './codec';
export * from './validate';
