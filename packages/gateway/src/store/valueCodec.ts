import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { JsonObject, JsonValue } from '@harmonyflow/protocol';

/** Values whose JSON text is longer than this are stored compressed. */
export const COMPRESS_ABOVE_BYTES = 1024;
/**
 * Marker of a compressed stored value. JSON text never starts with "~", so a stored value is
 * unambiguous. Base64 (not raw bytes) because the Lua script re-packs stored values with cmsgpack,
 * which emits msgpack strings that peers decode as UTF-8.
 */
const COMPRESSED = '~z:';

/** JSON text → stored form. */
export function storeValue(json: string): string {
  if (json.length <= COMPRESS_ABOVE_BYTES) return json;
  return COMPRESSED + deflateRawSync(json).toString('base64');
}

/** Stored form → JSON text. */
export function loadValueText(stored: string): string {
  if (!stored.startsWith(COMPRESSED)) return stored;
  return inflateRawSync(Buffer.from(stored.slice(COMPRESSED.length), 'base64')).toString('utf8');
}

export function loadValue(stored: string): JsonValue {
  return JSON.parse(loadValueText(stored)) as JsonValue;
}

/**
 * Flat [key, stored, key, stored…] → state object, null-prototype so keys like `__proto__` stay
 * plain data.
 */
export function stateFromFlat(flat: readonly string[]): JsonObject {
  const out: JsonObject = Object.create(null);
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]] = loadValue(flat[i + 1]);
  return out;
}

/** UTF-8 size: what MAX_STATE_BYTES counts. */
export function byteLength(s: string): number {
  return Buffer.byteLength(s, 'utf8');
}
