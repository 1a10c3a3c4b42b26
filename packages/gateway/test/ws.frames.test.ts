import { encodeJson, MessageType as T, type Envelope, type JsonValue, type UpdateFrame, BusKind } from '@harmonyflow/protocol';
import { prng, randInt, type Rand } from '@harmonyflow/testkit';
import { storeValue } from '../src/store/valueCodec';
import { ackEnvelope, ackJson, jsonString, updateEnvelope, updateJsonFast } from '../src/ws/frames';

// The hand-built JSON texts of the write path must say exactly what encodeJson of the envelope says.

const STRINGS = ['', 'plain', 'ünïcødé', '日本語', '🌍 emoji', 'quote " backslash \\ slash /', 'line\nbreak\ttab\u0000nul', '\u2028\u2029', 'x'.repeat(1500)];
const NUMBERS = [0, -0, 1, -1, 0.1, 1e21, 1.5e-7, -123456789.125, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2];

function pick<V>(r: Rand, xs: readonly V[]): V {
  return xs[randInt(r, xs.length)];
}

function value(r: Rand, depth = 0): JsonValue {
  switch (randInt(r, depth > 3 ? 5 : 7)) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return pick(r, NUMBERS);
    case 3:
    case 4: return pick(r, STRINGS);
    case 5: return Array.from({ length: randInt(r, 4) }, () => value(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: randInt(r, 4) }, () => [pick(r, STRINGS).slice(0, 20), value(r, depth + 1)]));
  }
}

describe('hand-built JSON frames equal encodeJson of their envelope', () => {
  const r = prng(7);

  it('jsonString: JSON.stringify of every string, escapes and lone surrogates included', () => {
    const samples = [...STRINGS, '\u001f', ' ', '\u007f', '\ud800', 'a\udfffb', '\ud83c\udf0d', 'c-123', '\\'];
    for (let c = 0; c < 0x80; c++) samples.push(`a${String.fromCharCode(c)}b`);
    for (const s of samples) expect(jsonString(s)).toBe(JSON.stringify(s));
  });

  it('ackJson: byte for byte, with and without every optional field', () => {
    for (let i = 0; i < 500; i++) {
      const args = [
        pick(r, ['2f0c8a8e-4a57-4a7c-9f0e-0d5b3c2a1e00', 's']),
        r() < 0.3 ? undefined : pick(r, STRINGS.filter((s) => s.length > 0 && s.length <= 128)),
        randInt(r, 1e6),
        r() < 0.3 ? undefined : value(r),
        r() < 0.5 ? undefined : 1 + randInt(r, 1e9),
        r() < 0.3,
        1_700_000_000_000 + randInt(r, 1e9),
      ] as const;
      expect(ackJson(...args)).toBe(encodeJson(ackEnvelope(...args)));
    }
  });

  it('updateJsonFast: the same JSON as encodeJson(updateEnvelope(f)) for SET, INCREMENT and DELETE', () => {
    for (let i = 0; i < 500; i++) {
      const op = pick(r, ['set', 'incr', 'delete'] as const);
      const v = op === 'incr' ? pick(r, NUMBERS) : value(r);
      const f: UpdateFrame = {
        kind: BusKind.UPDATE, sessionId: pick(r, ['2f0c8a8e-4a57-4a7c-9f0e-0d5b3c2a1e00', 's"q']), version: 1 + randInt(r, 1e6),
        originNode: 'n', originConn: 1, deviceId: r() < 0.2 ? '' : pick(r, STRINGS).slice(0, 128), correlationId: '', op,
        key: pick(r, STRINGS).slice(0, 256) || 'k', value: op === 'delete' ? '' : storeValue(JSON.stringify(v)),
        delta: op === 'incr' ? pick(r, NUMBERS) : 0, fields: [], deleted: [], updatedAt: 1_700_000_000_000 + randInt(r, 1e9), epoch: 'e',
      };
      const fast = updateJsonFast(f);
      expect(fast).not.toBeNull();
      // Same members and values; the order of members inside payload differs, which JSON does not mind.
      expect(JSON.parse(fast!)).toEqual(JSON.parse(encodeJson(updateEnvelope(f))));
    }
  });

  it('updateJsonFast leaves PATCH and whole replacements to the envelope path', () => {
    for (const op of ['patch', 'replace', 'merge'] as const) {
      expect(updateJsonFast({ op } as UpdateFrame)).toBeNull();
    }
  });
});
