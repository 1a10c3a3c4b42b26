import {
  EnvelopeType,
  MAX_JSON_DEPTH,
  MessageType,
  decodeJson,
  decodeProto,
  encodeJson,
  encodeProto,
  exceedsJsonDepth,
  jsonCodec,
  protoCodec,
  type DecodeResult,
} from '../src';
import { samples } from './fixtures/samples';

function expectFail(r: DecodeResult, code: 'invalid_message' | 'unknown_type') {
  expect(r.ok).toBe(false);
  if (!r.ok) {
    expect(r.code).toBe(code);
    expect(typeof r.message).toBe('string');
    expect(r.message.length).toBeGreaterThan(0);
  }
}

const sample = (name: string) => samples.find((s) => s.name === name)!.env;
const nested = (n: number, open: string, close: string, inner = '1') => open.repeat(n) + inner + close.repeat(n);

afterEach(() => {
  // nothing in this file may leak onto Object.prototype
  expect(Object.prototype.hasOwnProperty.call(Object.prototype, 'polluted')).toBe(false);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});

describe('decodeJson failures', () => {
  it.each([
    ['empty string', ''],
    ['not JSON', 'hello'],
    ['truncated', '{"type":1,"payload":{"client_time":'],
    ['trailing garbage', '{"type":1} x'],
    ['array', '[1,2]'],
    ['null', 'null'],
    ['number', '42'],
    ['string', '"x"'],
    ['type missing', '{"payload":{}}'],
    ['type null', '{"type":null}'],
    ['payload array', '{"type":1,"payload":[]}'],
    ['payload string', '{"type":1,"payload":"x"}'],
    ['payload number', '{"type":1,"payload":5}'],
    ['payload true', '{"type":1,"payload":true}'],
    ['session_id number', '{"type":1,"session_id":5}'],
    ['device_id object', '{"type":1,"device_id":{}}'],
    ['user_id array', '{"type":1,"user_id":[]}'],
    ['correlation_id number', '{"type":1,"correlation_id":7}'],
    ['timestamp string', '{"type":1,"timestamp":"2024-11-29"}'],
    ['lone surrogate junk', '{"type":1,"payload":{"a":"\\ud800"}'],
  ])('%s → invalid_message', (_n, text) => {
    expectFail(decodeJson(text), 'invalid_message');
  });

  it.each([
    ['99', '{"type":99}'],
    ['"x"', '{"type":"x"}'],
    ['"5" (numeric string)', '{"type":"5"}'],
    ['-1', '{"type":-1}'],
    ['1.5', '{"type":1.5}'],
    ['19', '{"type":19}'],
    ['1e300', '{"type":1e300}'],
    ['true', '{"type":true}'],
    ['object', '{"type":{}}'],
  ])('type %s → unknown_type', (_n, text) => {
    expectFail(decodeJson(text), 'unknown_type');
  });

  it('echoes a readable correlation_id on failure', () => {
    const r = decodeJson('{"type":99,"correlation_id":"c-7"}');
    expect(r).toMatchObject({ ok: false, code: 'unknown_type', correlation_id: 'c-7' });
    const r2 = decodeJson('{"type":5,"payload":[],"correlation_id":"c-8"}');
    expect(r2).toMatchObject({ ok: false, code: 'invalid_message', correlation_id: 'c-8' });
  });

  it('type 0 and absent optional fields decode (the handler answers unknown_type for 0)', () => {
    expect(decodeJson('{"type":0}')).toStrictEqual({ ok: true, envelope: { type: 0, timestamp: 0, payload: {} } });
    expect(decodeJson('{"type":3,"payload":null,"session_id":null,"timestamp":null}')).toStrictEqual({
      ok: true,
      envelope: { type: 3, timestamp: 0, payload: {} },
    });
  });

  it('unknown top-level keys are dropped, payload is kept as is', () => {
    const r = decodeJson('{"type":1,"timestamp":5,"payload":{"client_time":1,"x":[1]},"admin":true,"__proto__":{"polluted":1}}');
    expect(r).toStrictEqual({ ok: true, envelope: { type: 1, timestamp: 5, payload: { client_time: 1, x: [1] } } });
  });

  it.each([
    ['arrays in payload', (n: number) => `{"type":5,"payload":{"key":"k","operation":"SET","value":${nested(n, '[', ']')}}}`],
    ['objects in payload', (n: number) => `{"type":5,"payload":{"key":"k","operation":"SET","value":${nested(n, '{"a":', '}')}}}`],
    ['bare arrays', (n: number) => nested(n, '[', ']')],
  ])('deep nesting (%s, 10k levels) → invalid_message without throwing', (_n, make) => {
    expectFail(decodeJson(make(10_000)), 'invalid_message');
    expectFail(decodeJson(make(1_000_000)), 'invalid_message');
  });

  it('nesting limit is exact and ignores brackets inside strings', () => {
    // envelope + payload + value = 3 levels, so the value may nest MAX - 2 levels deep
    const frame = (n: number) => `{"type":5,"payload":{"key":"[[[{{{","operation":"SET","value":${nested(n, '[', ']')}}}`;
    expect(decodeJson(frame(MAX_JSON_DEPTH - 2)).ok).toBe(true);
    expectFail(decodeJson(frame(MAX_JSON_DEPTH - 1)), 'invalid_message');
    expect(exceedsJsonDepth('["\\"[[[[", "\\\\", "[[["]', 1)).toBe(false);
    expect(exceedsJsonDepth('["\\\\"]', 1)).toBe(false);
    expect(exceedsJsonDepth('[[1]]', 1)).toBe(true);
    expect(exceedsJsonDepth('[[1]]', 2)).toBe(false);
    expect(decodeJson(frame(3), 4).ok).toBe(false);
    expect(decodeJson(frame(3), 6).ok).toBe(true);
  });

  it('nesting is measured, not bracket counts: many shallow brackets pass, few deep ones do not', () => {
    // Depth of a JSON value by walking it: the reference the text scan must agree with.
    const depthOf = (v: unknown): number =>
      v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v as object).map(depthOf)) : 0;
    const wide = JSON.stringify(Array.from({ length: 200 }, (_, i) => ({ k: [i] }))); // 401 brackets, depth 3
    const strings = JSON.stringify({ s: '{['.repeat(500) }); // brackets inside a string, depth 1
    const mixed = JSON.stringify([Array.from({ length: 100 }, () => [[]]), JSON.parse(nested(5, '[', ']'))]); // depth 6
    for (const text of [wide, strings, mixed]) {
      const depth = depthOf(JSON.parse(text));
      expect(exceedsJsonDepth(text, depth)).toBe(false);
      expect(exceedsJsonDepth(text, depth - 1)).toBe(true);
    }
    expect(exceedsJsonDepth(wide, 64)).toBe(false);
    expect(exceedsJsonDepth(strings, 2)).toBe(false);
  });

  it('__proto__ in a payload stays an own key and pollutes nothing', () => {
    const r = decodeJson('{"type":5,"payload":{"__proto__":{"polluted":"yes"},"key":"a","operation":"SET","value":{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":2}}}}}');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const p = r.envelope.payload;
    expect(Object.getPrototypeOf(p)).toBe(Object.prototype);
    expect(Object.prototype.hasOwnProperty.call(p, '__proto__')).toBe(true);
    expect((p as Record<string, unknown>).polluted).toBeUndefined();
    // and through the binary codec and back (toEqual: toStrictEqual compares the own
    // "constructor" keys by identity)
    const back = decodeProto(encodeProto(r.envelope));
    expect(back).toEqual(r);
    if (back.ok) expect(Object.prototype.hasOwnProperty.call(back.envelope.payload, '__proto__')).toBe(true);
    // re-encoding to JSON keeps the key as data
    expect(encodeJson(r.envelope)).toContain('"__proto__":{"polluted":"yes"}');
  });

  it('a payload-level __proto__ envelope key is dropped, not applied', () => {
    const r = decodeJson('{"__proto__":{"type":1,"polluted":true},"type":2}');
    expect(r).toStrictEqual({ ok: true, envelope: { type: 2, timestamp: 0, payload: {} } });
  });

  it('jsonCodec rejects invalid UTF-8 in binary frames', () => {
    expectFail(jsonCodec.decode(Uint8Array.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d])), 'invalid_message');
  });

  it('non-string input to decodeJson is invalid_message', () => {
    expectFail(decodeJson(undefined as unknown as string), 'invalid_message');
    expectFail(decodeJson({} as unknown as string), 'invalid_message');
  });
});

describe('decodeProto failures', () => {
  it('garbage bytes → invalid_message', () => {
    expectFail(decodeProto(new Uint8Array(16).fill(0xff)), 'invalid_message');
    expectFail(decodeProto(Uint8Array.from([0x0f])), 'invalid_message'); // wire type 7
    expectFail(decodeProto(Uint8Array.from([0x7a, 0x7a, 0x7a])), 'invalid_message'); // field 15 len 122 > remaining
    expectFail(protoCodec.decode(new TextEncoder().encode('{"type":1,"payload":{}}')), 'invalid_message');
  });

  it('truncated frames never throw; a cut inside the payload is invalid_message', () => {
    const full = encodeProto(sample('AUTH_SUCCESS'));
    for (let n = 0; n < full.length; n++) {
      const r = decodeProto(full.subarray(0, n));
      expect(typeof r.ok).toBe('boolean');
    }
    expectFail(decodeProto(full.subarray(0, full.length - 3)), 'invalid_message');
    expectFail(decodeProto(full.subarray(0, full.length - 1)), 'invalid_message');
  });

  it('deeply nested groups (unknown fields) → invalid_message without throwing', () => {
    // field 50 start-group tags, never closed / closed 100k deep
    const open = [0x93, 0x03];
    const close = [0x94, 0x03];
    const deep = new Uint8Array(200_000 * 2);
    for (let i = 0; i < 200_000; i++) deep.set(open, i * 2);
    expectFail(decodeProto(deep), 'invalid_message');
    const balanced = new Uint8Array(100_000 * 4);
    for (let i = 0; i < 100_000; i++) {
      balanced.set(open, i * 2);
      balanced.set(close, 200_000 + i * 2);
    }
    const r = decodeProto(balanced);
    expect(typeof r.ok).toBe('boolean');
  });

  it('type 99 / negative → unknown_type (echoing correlation_id)', () => {
    const r = decodeProto(EnvelopeType.encode({ type: 99, correlation_id: 'c-1' }).finish());
    expect(r).toMatchObject({ ok: false, code: 'unknown_type', correlation_id: 'c-1' });
    expectFail(decodeProto(EnvelopeType.encode({ type: -1 }).finish()), 'unknown_type');
  });

  it('payload member that does not match type → invalid_message', () => {
    expectFail(decodeProto(EnvelopeType.encode({ type: MessageType.HEARTBEAT, auth: { token: 't' } }).finish()), 'invalid_message');
    expectFail(decodeProto(EnvelopeType.encode({ type: MessageType.UNKNOWN, heartbeat: {} }).finish()), 'invalid_message');
    expectFail(
      decodeProto(EnvelopeType.encode({ type: MessageType.HEARTBEAT, heartbeat: {}, heartbeat_ack: {} }).finish()),
      'invalid_message',
    );
  });

  it('bad embedded JSON → invalid_message', () => {
    const enc = (payload: Record<string, unknown>, type = MessageType.SNAPSHOT_RESPONSE, member = 'snapshot_response') =>
      EnvelopeType.encode({ type, [member]: payload, correlation_id: 'c-2' }).finish();
    const r = decodeProto(enc({ state_data_json: '{"a":' }));
    expect(r).toMatchObject({ ok: false, code: 'invalid_message', correlation_id: 'c-2' });
    expectFail(decodeProto(enc({ value_json: nested(10_000, '[', ']') }, MessageType.STATE_UPDATE, 'state_update')), 'invalid_message');
    expectFail(decodeProto(enc({ extra_json: '[1]' })), 'invalid_message');
    expectFail(decodeProto(enc({ extra_json: 'null' })), 'invalid_message');
    expectFail(decodeProto(enc({ extra_json: '{"version":"9"}' })), 'invalid_message'); // may not shadow a field
    expectFail(decodeProto(enc({ device: { extra_json: '{' } }, MessageType.DEVICE_JOINED, 'device_joined')), 'invalid_message');
  });

  it('extra_json with __proto__ stays an own key', () => {
    const bytes = EnvelopeType.encode({ type: MessageType.BROADCAST, broadcast: { message: 'm', type: 't', extra_json: '{"__proto__":{"polluted":true}}' } }).finish();
    const r = decodeProto(bytes);
    expect(r.ok).toBe(true);
    if (r.ok) {
      expect(Object.getPrototypeOf(r.envelope.payload)).toBe(Object.prototype);
      expect(Object.prototype.hasOwnProperty.call(r.envelope.payload, '__proto__')).toBe(true);
    }
  });

  it('text frame or non-binary input to protoCodec → invalid_message', () => {
    expectFail(protoCodec.decode('{"type":1}'), 'invalid_message');
    expectFail(decodeProto('abc' as unknown as Uint8Array), 'invalid_message');
    expectFail(protoCodec.decode({} as unknown as Uint8Array), 'invalid_message');
  });

  it('an empty frame is an UNKNOWN envelope (all proto3 defaults)', () => {
    expect(decodeProto(new Uint8Array(0))).toStrictEqual({ ok: true, envelope: { type: 0, timestamp: 0, payload: {} } });
  });
});
