import { decodeJson, encodeJson, encodeProto, jsonCodec, protoCodec, type Codec, type DecodeResult } from '../src';
import { prng, randInt, type Rand } from '@harmonyflow/testkit';
import { samples } from './fixtures/samples';

const FRAMES_PER_CODEC = 2000;

const int = randInt;

/** Byte-level mutations of a valid frame. */
function mutateBytes(r: Rand, src: Uint8Array, other: Uint8Array): Uint8Array {
  let b: Uint8Array = Uint8Array.from(src);
  const rounds = 1 + int(r, 4);
  for (let i = 0; i < rounds; i++) {
    const pos = int(r, b.length + 1);
    switch (int(r, 8)) {
      case 0: // flip bits
        if (b.length) b[Math.min(pos, b.length - 1)] ^= 1 << int(r, 8);
        break;
      case 1: // random byte
        if (b.length) b[Math.min(pos, b.length - 1)] = int(r, 256);
        break;
      case 2: // truncate
        b = b.slice(0, pos);
        break;
      case 3: {
        // insert random bytes
        const ins = Uint8Array.from({ length: 1 + int(r, 8) }, () => int(r, 256));
        b = concat(b.slice(0, pos), ins, b.slice(pos));
        break;
      }
      case 4: {
        // delete a range
        const end = Math.min(b.length, pos + 1 + int(r, 16));
        b = concat(b.slice(0, pos), b.slice(end));
        break;
      }
      case 5: {
        // duplicate a range
        const end = Math.min(b.length, pos + 1 + int(r, 32));
        b = concat(b.slice(0, end), b.slice(pos, end), b.slice(end));
        break;
      }
      case 6: // splice with another frame
        b = concat(b.slice(0, pos), other.slice(int(r, other.length + 1)));
        break;
      default: // interesting values (varint edges, length prefixes)
        if (b.length) b[Math.min(pos, b.length - 1)] = [0x00, 0x7f, 0x80, 0xff, 0x0a, 0x12, 0x22][int(r, 7)];
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const JSON_TOKENS = ['{', '}', '[', ']', '"', ':', ',', '\\', 'null', 'true', '-1e999', '1.5', '"__proto__"', '{"__proto__":{"polluted":1}}', '\u0000', '\ud800', '🌍', '"type"', '99', '[[[[[[[[', ' '];

/** Text-level mutations of a valid JSON frame. */
function mutateText(r: Rand, src: string): string {
  let s = src;
  const rounds = 1 + int(r, 4);
  for (let i = 0; i < rounds; i++) {
    const pos = int(r, s.length + 1);
    switch (int(r, 4)) {
      case 0:
        s = s.slice(0, pos) + JSON_TOKENS[int(r, JSON_TOKENS.length)] + s.slice(pos);
        break;
      case 1:
        s = s.slice(0, pos) + s.slice(pos + 1 + int(r, 8));
        break;
      case 2:
        s = s.slice(0, pos);
        break;
      default:
        s = s.slice(0, pos) + String.fromCharCode(int(r, 0x80)) + s.slice(pos + 1);
    }
  }
  return s;
}

function checkResult(codec: Codec, r: DecodeResult) {
  expect(typeof r.ok).toBe('boolean');
  if (!r.ok) {
    expect(['invalid_message', 'unknown_type']).toContain(r.code);
    expect(typeof r.message).toBe('string');
    return;
  }
  // A decoded envelope is well-formed: it re-encodes, and after one normalising round trip
  // (invalid UTF-8 becomes U+FFFD, …) encoding is a fixed point.
  const once = codec.decode(codec.encode(r.envelope));
  expect(once.ok).toBe(true);
  if (once.ok) expect(codec.decode(codec.encode(once.envelope))).toEqual(once);
}

afterAll(() => {
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});

describe('fuzz: mutated frames never make a decoder throw', () => {
  it(`proto: ${FRAMES_PER_CODEC} mutated binary frames`, () => {
    const r = prng(0x5eed1);
    const frames = samples.map((s) => encodeProto(s.env));
    let accepted = 0;
    for (let i = 0; i < FRAMES_PER_CODEC; i++) {
      const frame = mutateBytes(r, frames[int(r, frames.length)], frames[int(r, frames.length)]);
      let res: DecodeResult | undefined;
      expect(() => (res = protoCodec.decode(frame))).not.toThrow();
      checkResult(protoCodec, res!);
      if (res!.ok) accepted++;
    }
    // the mutations must reach past the first byte now and then
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(FRAMES_PER_CODEC);
  });

  it(`json: ${FRAMES_PER_CODEC} mutated text frames`, () => {
    const r = prng(0x5eed2);
    const frames = samples.map((s) => encodeJson(s.env));
    let accepted = 0;
    for (let i = 0; i < FRAMES_PER_CODEC; i++) {
      const frame = mutateText(r, frames[int(r, frames.length)]);
      let res: DecodeResult | undefined;
      expect(() => (res = decodeJson(frame))).not.toThrow();
      checkResult(jsonCodec, res!);
      if (res!.ok) accepted++;
    }
    expect(accepted).toBeGreaterThan(0);
    expect(accepted).toBeLessThan(FRAMES_PER_CODEC);
  });

  it(`json: ${FRAMES_PER_CODEC} mutated binary frames (UTF-8 path)`, () => {
    const r = prng(0x5eed3);
    const enc = new TextEncoder();
    const frames = samples.map((s) => enc.encode(encodeJson(s.env)));
    for (let i = 0; i < FRAMES_PER_CODEC; i++) {
      const frame = mutateBytes(r, frames[int(r, frames.length)], frames[int(r, frames.length)]);
      let res: DecodeResult | undefined;
      expect(() => (res = jsonCodec.decode(frame))).not.toThrow();
      checkResult(jsonCodec, res!);
    }
  });

  it(`proto: ${FRAMES_PER_CODEC} random byte strings`, () => {
    const r = prng(0x5eed4);
    for (let i = 0; i < FRAMES_PER_CODEC; i++) {
      const frame = Uint8Array.from({ length: int(r, 64) }, () => int(r, 256));
      let res: DecodeResult | undefined;
      expect(() => (res = protoCodec.decode(frame))).not.toThrow();
      checkResult(protoCodec, res!);
    }
  });
});
