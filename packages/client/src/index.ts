/**
 * `@harmonyflow/client` — the HarmonyFlow SDK for browsers and Node: {@link SessionClient} keeps
 * a device's live view of a session, queues writes offline and applies each exactly once.
 *
 * This entry speaks JSON only and loads neither protobufjs nor msgpackr. The binary codec is
 * `protoCodec` from `@harmonyflow/client/proto`; a file storage for Node is `FileStorage` from
 * `@harmonyflow/client/node`.
 */
export {
  SessionClient,
  type SessionClientOptions, type ClientEvents, type ConnectionStatus, type WriteResult, type WriteOptions,
  type WebSocketLike, type WebSocketFactory, type NumericKeys,
} from './client';
export { SessionError, ClientErrorCode } from './errors';
export { MemoryStorage, type StorageLike } from './storage';
export { jsonCodec } from './wire';
export { httpBaseFromWsUrl, type FetchLike } from './http';
export { jwtTimes, refreshDelayMs, type TokenSource } from './token';
export {
  MessageType, CloseCode, ErrorCode, SUBPROTOCOL_JSON, SUBPROTOCOL_PROTO,
  type Codec, type DeviceInfo, type Envelope, type JsonObject, type JsonValue,
} from '@harmonyflow/protocol/lite';
