import { decodeJson, encodeJson, encodeProto, jsonCodec, protoCodec, type Codec, type DecodeResult } from '../src';
import { mutateBytes, mutateText, prng, randInt, type Rand } from '@harmonyflow/testkit';
import { samples } from './fixtures/samples';

const FRAMES_PER_CODEC = 2000;

const int = randInt;

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
