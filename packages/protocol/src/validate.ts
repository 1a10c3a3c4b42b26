import { MAX_JSON_DEPTH } from './codec/jsonText';

/**
 * Field rules shared by every edge that accepts them (HTTP bodies, WebSocket frames, the SDK), so
 * that one input is refused the same way wherever it enters (SPEC §9 "Write identity", "Keys").
 */

/** Longest `device_id` and `correlation_id`, in characters (UTF-16 code units). */
export const MAX_ID_LENGTH = 128;
/** Longest state key, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 256;
/**
 * Deepest state object accepted: frames carrying it add two levels (envelope, payload), and every
 * frame the server sends must stay decodable under the codecs' MAX_JSON_DEPTH.
 */
export const MAX_STATE_DEPTH = MAX_JSON_DEPTH - 2;

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True for a UUID in its canonical 8-4-4-4-12 hex form (any case). */
export function isUuid(s: string): boolean {
  return UUID_RE.test(s);
}

/**
 * True for a device id or correlation id: 1–{@link MAX_ID_LENGTH} characters of well-formed
 * Unicode (a lone surrogate would arrive in Redis as U+FFFD and merge two ids into one).
 */
export function isValidId(v: unknown): v is string {
  return typeof v === 'string' && v.length >= 1 && v.length <= MAX_ID_LENGTH && isWellFormed(v);
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** True when the string has no lone surrogate, i.e. it encodes to UTF-8 without loss. */
export function isWellFormed(s: string): boolean {
  const native = (s as { isWellFormed?: () => boolean }).isWellFormed;
  return native ? native.call(s) : !LONE_SURROGATE.test(s);
}

/** UTF-8 length of a well-formed string, without allocating. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/**
 * Why `key` is not a valid state key, or null when it is: 1–{@link MAX_KEY_BYTES} bytes of UTF-8
 * from well-formed Unicode. Lone surrogates are refused because UTF-8 cannot carry them: `\ud800`
 * and `\udfff` would both arrive as U+FFFD and silently name the same key.
 */
export function stateKeyProblem(key: unknown): string | null {
  if (typeof key !== 'string' || key.length === 0) return 'a key must be a non-empty string';
  if (key.length > MAX_KEY_BYTES) return `a key must be at most ${MAX_KEY_BYTES} bytes of UTF-8`;
  if (!isWellFormed(key)) return 'a key must be well-formed Unicode (no lone surrogates)';
  if (utf8Length(key) > MAX_KEY_BYTES) return `a key must be at most ${MAX_KEY_BYTES} bytes of UTF-8`;
  return null;
}

const hasOwn = Object.prototype.hasOwnProperty;

/**
 * Nesting depth of a JSON value: 0 for a primitive, 1 for a flat object or array; `limit + 1` as
 * soon as it is known to exceed `limit` (the rest is not walked). Iterative, so hostile nesting
 * cannot overflow the stack while it is measured. It runs on every value a client writes, so it
 * allocates little: nothing for a primitive, and only objects and arrays go on its stack.
 */
export function jsonDepth(v: unknown, limit: number): number {
  if (v === null || typeof v !== 'object') return 0;
  let max = 1;
  if (max > limit) return max;
  const nodes: object[] = [v];
  const depths: number[] = [1];
  while (nodes.length > 0) {
    const node = nodes.pop()!;
    const d = depths.pop()! + 1; // the depth of its children
    if (Array.isArray(node)) {
      for (let i = 0; i < node.length; i++) {
        const x: unknown = node[i];
        if (x === null || typeof x !== 'object') continue;
        if (d > max && (max = d) > limit) return max;
        nodes.push(x);
        depths.push(d);
      }
    } else {
      for (const k in node) {
        if (!hasOwn.call(node, k)) continue;
        const x: unknown = (node as Record<string, unknown>)[k];
        if (x === null || typeof x !== 'object') continue;
        if (d > max && (max = d) > limit) return max;
        nodes.push(x);
        depths.push(d);
      }
    }
  }
  return max;
}
