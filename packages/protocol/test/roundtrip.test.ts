import {
  MessageType,
  codecFor,
  decodeJson,
  decodeProto,
  encodeJson,
  encodeProto,
  jsonCodec,
  negotiateSubprotocol,
  protoCodec,
  EnvelopeType,
  SUBPROTOCOL_JSON,
  SUBPROTOCOL_PROTO,
  type Codec,
  type DecodeResult,
  type Envelope,
} from '../src';
import { samples } from './fixtures/samples';

function ok(r: DecodeResult): Envelope {
  if (!r.ok) throw new Error(`decode failed: ${r.code}: ${r.message}`);
  return r.envelope;
}

const codecs: [string, Codec][] = [
  ['json', jsonCodec],
  ['proto', protoCodec],
];

describe('samples', () => {
  it('cover every message type', () => {
    const covered = new Set(samples.map((s) => s.env.type));
    for (let t = 0; t <= MessageType.RECONNECT; t++) expect(covered.has(t)).toBe(true);
  });
  it('keep a __proto__ key as an own property (the fixture itself is not broken)', () => {
    const snap = samples.find((s) => s.name === 'SNAPSHOT_RESPONSE')!;
    const state = snap.env.payload.state_data as object;
    expect(Object.prototype.hasOwnProperty.call(state, '__proto__')).toBe(true);
    expect(Object.getPrototypeOf(state)).toBe(Object.prototype);
  });
});

describe.each(codecs)('%s codec round trip', (_name, codec) => {
  it.each(samples.map((s) => [s.name, s.env] as const))('%s', (_n, env) => {
    const frame = codec.encode(env);
    expect(typeof frame === 'string').toBe(!codec.binary);
    const back = ok(codec.decode(frame));
    expect(back).toStrictEqual(env);
    // Decoding the decoded form again is stable.
    expect(ok(codec.decode(codec.encode(back)))).toStrictEqual(env);
  });
});

describe('cross-codec', () => {
  it.each(samples.map((s) => [s.name, s.env] as const))('json → proto → json: %s', (_n, env) => {
    const fromJson = ok(decodeJson(encodeJson(env)));
    const viaProto = ok(decodeProto(encodeProto(fromJson)));
    expect(encodeJson(viaProto).length).toBe(encodeJson(fromJson).length);
    expect(viaProto).toStrictEqual(fromJson);
  });

  it('binary frames are smaller than JSON for the hot messages', () => {
    for (const name of ['HEARTBEAT', 'HEARTBEAT_ACK', 'STATE_UPDATE s→c SET', 'STATE_UPDATE_ACK']) {
      const env = samples.find((s) => s.name === name)!.env;
      expect(encodeProto(env).length).toBeLessThan(encodeJson(env).length);
    }
  });
});

describe('Codec.decode input forms', () => {
  const env = samples.find((s) => s.name === 'STATE_UPDATE s→c PATCH')!.env;

  it('json accepts string, Uint8Array and ArrayBuffer (UTF-8)', () => {
    const text = encodeJson(env);
    const bytes = new TextEncoder().encode(text);
    expect(ok(jsonCodec.decode(text))).toStrictEqual(env);
    expect(ok(jsonCodec.decode(bytes))).toStrictEqual(env);
    expect(ok(jsonCodec.decode(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)))).toStrictEqual(env);
  });

  it('proto accepts Uint8Array, Buffer, a view into a larger buffer and ArrayBuffer', () => {
    const bytes = encodeProto(env);
    const copy = Uint8Array.from(bytes);
    expect(ok(protoCodec.decode(copy))).toStrictEqual(env);
    expect(ok(protoCodec.decode(Buffer.from(copy)))).toStrictEqual(env);
    const big = new Uint8Array(copy.length + 20);
    big.set(copy, 7);
    expect(ok(protoCodec.decode(big.subarray(7, 7 + copy.length)))).toStrictEqual(env);
    expect(ok(protoCodec.decode(copy.buffer))).toStrictEqual(env);
  });
});

describe('proto mapping details', () => {
  it('keeps absent optional fields absent and present zero values present', () => {
    const a = ok(decodeProto(encodeProto({ type: MessageType.AUTH, timestamp: 0, payload: { token: 't', device_id: 'd', last_version: 0 } })));
    expect(a.payload).toStrictEqual({ token: 't', device_id: 'd', last_version: 0 });
    expect('session_id' in a).toBe(false);
    const b = ok(decodeProto(encodeProto({ type: MessageType.AUTH, timestamp: 0, payload: { token: 't', device_id: 'd' } })));
    expect(b.payload).toStrictEqual({ token: 't', device_id: 'd' });
  });

  it('fills implicit-presence fields with zero values (proto3 senders omit them)', () => {
    const bytes = EnvelopeType.encode({ type: MessageType.AUTH_SUCCESS, auth_success: {} }).finish();
    expect(ok(decodeProto(bytes))).toStrictEqual({
      type: MessageType.AUTH_SUCCESS,
      timestamp: 0,
      payload: { session_id: '', user_id: '', device_id: '', node_id: '', version: 0, devices: [], heartbeat_interval_ms: 0, resumed: false, epoch: '', last_mutation_id: 0, max_message_bytes: 0 },
    });
  });

  it('omits empty optional repeated fields', () => {
    const env: Envelope = { type: MessageType.STATE_UPDATE, timestamp: 1, payload: { operation: 'PATCH', changes: {}, deleted_keys: [], version: 3 } };
    expect(ok(decodeProto(encodeProto(env))).payload).toStrictEqual({ operation: 'PATCH', changes: {}, version: 3 });
  });

  it('carries undeclared payload keys in extra_json and merges them back', () => {
    const env: Envelope = {
      type: MessageType.BROADCAST,
      timestamp: 5,
      payload: { message: 'hi', type: 'info', from: { role: 'admin' }, ttl: 30, ['__proto__']: { polluted: 1 } },
    };
    const back = ok(decodeProto(encodeProto(env)));
    expect(back).toStrictEqual(env);
    expect(Object.prototype.hasOwnProperty.call(back.payload, '__proto__')).toBe(true);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('large int64 values round-trip as numbers', () => {
    const env: Envelope = { type: MessageType.STATE_UPDATE_ACK, timestamp: 8640000000000000, payload: { version: Number.MAX_SAFE_INTEGER } };
    expect(ok(decodeProto(encodeProto(env)))).toStrictEqual(env);
  });

  it('encode rejects wrongly typed payload fields with a TypeError', () => {
    expect(() => encodeProto({ type: MessageType.STATE_UPDATE_ACK, timestamp: 0, payload: { version: '3' } })).toThrow(TypeError);
    expect(() => encodeProto({ type: MessageType.RECONNECT, timestamp: 0, payload: { retry_after_ms: -1 } })).toThrow(TypeError);
    expect(() => encodeProto({ type: MessageType.AUTH_SUCCESS, timestamp: 0, payload: { devices: {} } })).toThrow(TypeError);
    expect(() => encodeProto({ type: 99 as MessageType, timestamp: 0, payload: {} })).toThrow(TypeError);
  });

  it('treats null payload fields as absent (value: null is a JSON value and kept)', () => {
    const env: Envelope = { type: MessageType.STATE_UPDATE, timestamp: 0, payload: { key: 'k', value: null, operation: 'SET', device_id: null } };
    expect(ok(decodeProto(encodeProto(env))).payload).toStrictEqual({ key: 'k', value: null, operation: 'SET' });
  });
});

describe('codecFor / negotiateSubprotocol', () => {
  it('maps subprotocols to codecs (JSON default)', () => {
    expect(codecFor(SUBPROTOCOL_PROTO)).toBe(protoCodec);
    expect(codecFor(SUBPROTOCOL_JSON)).toBe(jsonCodec);
    expect(codecFor(undefined)).toBe(jsonCodec);
    expect(protoCodec.name).toBe(SUBPROTOCOL_PROTO);
    expect(jsonCodec.name).toBe(SUBPROTOCOL_JSON);
    expect(protoCodec.binary).toBe(true);
    expect(jsonCodec.binary).toBe(false);
  });
  it('negotiates from the Sec-WebSocket-Protocol header', () => {
    expect(negotiateSubprotocol(undefined)).toBe(SUBPROTOCOL_JSON);
    expect(negotiateSubprotocol('')).toBe(SUBPROTOCOL_JSON);
    expect(negotiateSubprotocol('harmonyflow.v1.proto, harmonyflow.v1.json')).toBe(SUBPROTOCOL_PROTO);
    expect(negotiateSubprotocol('chat, harmonyflow.v1.json')).toBe(SUBPROTOCOL_JSON);
    expect(negotiateSubprotocol('chat, superchat')).toBeNull();
  });
});
