/**
 * `@harmonyflow/client/proto` — the binary codec (`harmonyflow.v1.proto`), kept out of the main
 * entry because it brings protobufjs: `new SessionClient({ …, codec: protoCodec })`.
 */
export { protoCodec } from '@harmonyflow/protocol/codec';
