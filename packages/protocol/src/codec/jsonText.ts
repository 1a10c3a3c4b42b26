/**
 * Default bound on JSON nesting (arrays and objects) accepted by the decoders, counted from the
 * outermost bracket of one JSON document. V8's `JSON.parse` accepts any depth, but
 * `JSON.stringify` (and every recursive walk after it) overflows the stack a few thousand levels
 * down, so a deeply nested frame must be refused at the door rather than stored.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * Tells whether JSON text nests arrays/objects deeper than `maxDepth`. Linear and without
 * allocation; string contents are skipped with `indexOf`. Meant for text that is about to be
 * handed to `JSON.parse` (for malformed text the answer does not matter: parsing fails anyway).
 */
export function exceedsJsonDepth(text: string, maxDepth: number): boolean {
  // Nesting never exceeds the number of opening brackets (strings' contents included): counted
  // with indexOf, that settles an ordinary frame (a handful of brackets) for a fraction of the
  // character-by-character walk below, which only frames with many brackets need.
  if (!moreBracketsThan(text, maxDepth)) return false;
  const n = text.length;
  let depth = 0;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i;
      for (;;) {
        j = text.indexOf('"', j + 1);
        if (j < 0) return false; // unterminated string: JSON.parse rejects it
        let backslashes = 0;
        for (let b = j - 1; text.charCodeAt(b) === 0x5c /* \ */; b--) backslashes++;
        if ((backslashes & 1) === 0) break;
      }
      i = j;
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (++depth > maxDepth) return true;
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      depth--;
    }
  }
  return false;
}

/** Whether `text` holds more than `limit` opening brackets (`{` and `[` together). */
function moreBracketsThan(text: string, limit: number): boolean {
  let count = 0;
  for (let i = text.indexOf('{'); i >= 0; i = text.indexOf('{', i + 1)) if (++count > limit) return true;
  for (let i = text.indexOf('['); i >= 0; i = text.indexOf('[', i + 1)) if (++count > limit) return true;
  return false;
}

/** Result of {@link parseJsonText}. */
export type ParsedJson = { ok: true; value: unknown } | { ok: false; message: string };

/**
 * `JSON.parse` that never throws and refuses nesting deeper than `maxDepth`.
 * `__proto__` keys stay ordinary own properties (that is what `JSON.parse` does); callers must
 * not copy parsed objects key by key into other objects.
 */
export function parseJsonText(text: string, maxDepth: number = MAX_JSON_DEPTH): ParsedJson {
  if (exceedsJsonDepth(text, maxDepth)) return { ok: false, message: `JSON nested deeper than ${maxDepth} levels` };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, message: `malformed JSON: ${errorText(e)}` };
  }
}

/** @internal Short, safe text for an unknown thrown value. */
export function errorText(e: unknown): string {
  const s = e instanceof Error ? e.message : String(e);
  return s.length > 160 ? s.slice(0, 160) + '…' : s;
}

/** @internal True for a non-null, non-array object. */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
