import * as index from '../src';
import * as bus from '../src/bus';
import * as codec from '../src/codec';
import * as messageTypes from '../src/messageTypes';
import * as validate from '../src/validate';
import * as schema from '../src/generated/schema';

// The package root names its values one by one (index.ts says why): a value added to a module and
// not to that list would be missing from the package, so every one is checked here.
describe('the package root', () => {
  it.each(Object.entries({ bus, codec, messageTypes, validate, schema }))('exports every value of %s', (_name, mod) => {
    for (const [key, value] of Object.entries(mod)) {
      expect([key, (index as Record<string, unknown>)[key]]).toEqual([key, value]);
    }
  });
});
