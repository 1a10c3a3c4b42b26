/**
 * @harmonyflow/client — the TypeScript SDK for browsers and Node: a `SessionClient` that keeps a
 * device's live view of a session in sync, plus the protocol's types and codecs.
 */
export * from '@harmonyflow/protocol';
export { SessionClient, SessionError, type SessionClientOptions, type ClientEvents, type WebSocketLike, type WebSocketFactory } from './client';
