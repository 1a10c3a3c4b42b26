/** Seeded mutations of valid frames for fuzz tests (bytes and JSON text). */
import { randInt, type Rand } from './prng';

const int = randInt;
const pick = <X>(r: Rand, xs: readonly X[]): X => xs[int(r, xs.length)];

/** Byte-level mutations: bit flips, random bytes, truncation, insertion, deletion, duplication, splices. */
export function mutateBytes(r: Rand, src: Uint8Array, other: Uint8Array): Buffer {
  let b = Buffer.from(src);
  const rounds = 1 + int(r, 4);
  for (let i = 0; i < rounds; i++) {
    const pos = int(r, b.length + 1);
    const at = Math.min(pos, Math.max(0, b.length - 1));
    switch (int(r, 8)) {
      case 0:
        if (b.length) b[at] ^= 1 << int(r, 8);
        break;
      case 1:
        if (b.length) b[at] = int(r, 256);
        break;
      case 2:
        b = b.subarray(0, pos);
        break;
      case 3:
        b = Buffer.concat([b.subarray(0, pos), Buffer.from(Array.from({ length: 1 + int(r, 8) }, () => int(r, 256))), b.subarray(pos)]);
        break;
      case 4:
        b = Buffer.concat([b.subarray(0, pos), b.subarray(Math.min(b.length, pos + 1 + int(r, 16)))]);
        break;
      case 5: {
        const end = Math.min(b.length, pos + 1 + int(r, 32));
        const copies = 1 + int(r, 3);
        b = Buffer.concat([b.subarray(0, end), ...Array.from({ length: copies }, () => b.subarray(pos, end)), b.subarray(end)]);
        break;
      }
      case 6:
        b = Buffer.concat([b.subarray(0, pos), Buffer.from(other.subarray(int(r, other.length + 1)))]);
        break;
      default:
        if (b.length) b[at] = pick(r, [0x00, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x12, 0x22, 0x7a]);
    }
  }
  return b;
}

/** JSON fragments that stress parsers: structure, escapes, extremes, prototype keys, odd code points. */
export const JSON_TOKENS = [
  '{', '}', '[', ']', '"', ':', ',', '\\', 'null', 'true', '-1e999', '1e308', '-0', '1.5', '"__proto__"', '"constructor"',
  '{"__proto__":{"polluted":"yes"}}', '\u0000', '\ud800', '\u2028', '🌍', '"type"', '"payload"', '99', '-1', '[[[[[[[[', ' ', '\ufeff',
];

/** Text-level mutations of a JSON frame. */
export function mutateText(r: Rand, src: string): string {
  let s = src;
  const rounds = 1 + int(r, 4);
  for (let i = 0; i < rounds; i++) {
    const pos = int(r, s.length + 1);
    switch (int(r, 6)) {
      case 0:
        s = s.slice(0, pos) + pick(r, JSON_TOKENS) + s.slice(pos);
        break;
      case 1:
        s = s.slice(0, pos) + s.slice(pos + 1 + int(r, 8));
        break;
      case 2:
        s = s.slice(0, pos);
        break;
      case 3: {
        const end = Math.min(s.length, pos + 1 + int(r, 24));
        s = s.slice(0, end) + s.slice(pos, end) + s.slice(end);
        break;
      }
      case 4:
        s = s.replace(/\d/, () => pick(r, ['-', 'e', '.', '9'.repeat(30), '0x1', 'NaN', String(int(r, 20))]));
        break;
      default:
        s = s.slice(0, pos) + String.fromCharCode(int(r, 0x10000)) + s.slice(pos + 1);
    }
  }
  return s;
}
