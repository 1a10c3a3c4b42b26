import { prng, randInt, type Rand } from '@harmonyflow/testkit';
import { jsonDepth } from '../src';

/** The straightforward walk jsonDepth must agree with (its earlier implementation). */
function referenceDepth(v: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[v, 1]];
  while (stack.length > 0) {
    const [node, d] = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (d > max) max = d;
    if (max > limit) return max;
    if (Array.isArray(node)) for (const x of node) stack.push([x, d + 1]);
    else for (const k of Object.keys(node)) stack.push([(node as Record<string, unknown>)[k], d + 1]);
  }
  return max;
}

function nested(depth: number, inner: unknown = 0): unknown {
  let v = inner;
  for (let i = 0; i < depth; i++) v = i % 2 ? { k: v } : [v];
  return v;
}

function randomValue(r: Rand, depth: number): unknown {
  const roll = randInt(r, depth > 8 ? 4 : 7);
  switch (roll) {
    case 0: return null;
    case 1: return r() * 1000;
    case 2: return 'text';
    case 3: return r() < 0.5;
    case 4: return Array.from({ length: randInt(r, 4) }, () => randomValue(r, depth + 1));
    default: return Object.fromEntries(Array.from({ length: randInt(r, 4) }, (_, i) => [`k${i}`, randomValue(r, depth + 1)]));
  }
}

describe('jsonDepth', () => {
  it.each<[string, unknown, number, number]>([
    ['a number', 5, 10, 0],
    ['a string', 'deep', 10, 0],
    ['null', null, 10, 0],
    ['a boolean', true, 0, 0],
    ['an empty object', {}, 10, 1],
    ['an empty array', [], 10, 1],
    ['a flat object', { a: 1, b: 'x', c: null }, 10, 1],
    ['an object holding an array', { a: [1, 2] }, 10, 2],
    ['siblings of different depth', [[[[]]], {}, [{ a: { b: 1 } }]], 10, 4],
    ['nesting at the limit', nested(5), 5, 5],
    ['nesting past the limit (stops at limit+1)', nested(50), 5, 6],
    ['hostile depth (stops early, no stack overflow)', nested(200_000), 62, 63],
    ['prototype keys as data', JSON.parse('{"__proto__":{"a":[1]},"constructor":{}}'), 10, 3],
    ['inherited properties are not walked', Object.assign(Object.create({ inherited: [[[1]]] }), { own: 1 }), 10, 1],
  ])('%s', (_name, value, limit, expected) => {
    expect(jsonDepth(value, limit)).toBe(expected);
    expect(referenceDepth(value, limit)).toBe(expected);
  });

  it('agrees with the reference walk on random values and limits (negative ones too)', () => {
    const r = prng(20240601);
    for (let i = 0; i < 2000; i++) {
      const v = randomValue(r, 0);
      const limit = randInt(r, 13) - 1;
      expect(jsonDepth(v, limit)).toBe(referenceDepth(v, limit));
    }
  });
});
