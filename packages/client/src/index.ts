/**
 * @harmonyflow/client — the TypeScript SDK. It speaks the protocol defined in
 * `@harmonyflow/protocol`; its message types and codecs are re-exported here so applications
 * depend on one package.
 */
export * from '@harmonyflow/protocol';
