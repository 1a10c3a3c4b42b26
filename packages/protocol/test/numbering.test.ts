import * as fs from 'fs';
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { EnvelopeType, MAX_MESSAGE_TYPE, MessageType, PAYLOAD_FIELD_OFFSET } from '../src';

const PROTO_FILE = path.resolve(__dirname, '../../../proto/harmonyflow/v1/session.proto');
const PROTO_PREFIX = 'MESSAGE_TYPE_';

/** SPEC.md lives next to the checkout (/work/shared); fall back to the copy kept in the repo. */
const SPEC_CANDIDATES = [
  path.resolve(__dirname, '../../../../shared/SPEC.md'),
  path.resolve(__dirname, '../../../shared/SPEC.md'),
  path.resolve(__dirname, 'fixtures/spec-message-types.md'),
];

/** `| N | NAME |` rows of the table under "## 5." (up to the next "## " heading). */
function specTable(markdown: string): Map<number, string> {
  const lines = markdown.split(/\r?\n/);
  const start = lines.findIndex((l) => /^##\s+5\./.test(l));
  if (start < 0) throw new Error('SPEC section 5 not found');
  const rows = new Map<number, string>();
  for (let i = start + 1; i < lines.length && !/^##\s/.test(lines[i]); i++) {
    const m = /^\|\s*(\d+)\s*\|\s*([A-Z][A-Z0-9_]*)\s*\|/.exec(lines[i]);
    if (m) {
      const n = Number(m[1]);
      if (rows.has(n)) throw new Error(`SPEC lists type ${n} twice`);
      rows.set(n, m[2]);
    }
  }
  return rows;
}

/** The TypeScript enum as number → name. */
function tsEnum(): Map<number, string> {
  const m = new Map<number, string>();
  for (const [name, value] of Object.entries(MessageType)) if (typeof value === 'number') m.set(value, name);
  return m;
}

function protoEnum(): Map<number, string> {
  const root = protobuf.loadSync(PROTO_FILE);
  const e = root.lookupEnum('harmonyflow.v1.MessageType');
  const m = new Map<number, string>();
  for (const [name, value] of Object.entries(e.values)) {
    expect(name.startsWith(PROTO_PREFIX)).toBe(true);
    expect(m.has(value)).toBe(false); // no aliases
    m.set(value, name.slice(PROTO_PREFIX.length));
  }
  return m;
}

const sorted = (m: Map<number, string>) => [...m.entries()].sort((a, b) => a[0] - b[0]);

describe('MessageType numbering', () => {
  it('TypeScript enum is 0..MAX_MESSAGE_TYPE without gaps', () => {
    const ts = tsEnum();
    expect(sorted(ts).map(([n]) => n)).toEqual(Array.from({ length: MAX_MESSAGE_TYPE + 1 }, (_, i) => i));
  });

  it('.proto enum equals the TypeScript enum (MESSAGE_TYPE_ prefix stripped)', () => {
    expect(sorted(protoEnum())).toEqual(sorted(tsEnum()));
  });

  it('SPEC §5 table equals the TypeScript enum', () => {
    const file = SPEC_CANDIDATES.find((p) => fs.existsSync(p))!;
    expect(file).toBeDefined();
    expect(sorted(specTable(fs.readFileSync(file, 'utf8')))).toEqual(sorted(tsEnum()));
  });

  it('the fixture copy of the SPEC table is in sync with SPEC.md when it is reachable', () => {
    const fixture = specTable(fs.readFileSync(SPEC_CANDIDATES[2], 'utf8'));
    expect(sorted(fixture)).toEqual(sorted(tsEnum()));
    const spec = SPEC_CANDIDATES.slice(0, 2).find((p) => fs.existsSync(p));
    if (spec) expect(sorted(specTable(fs.readFileSync(spec, 'utf8')))).toEqual(sorted(fixture));
  });

  it('Envelope payload member for type T is field 10 + T named after the type', () => {
    const members = EnvelopeType.oneofs.payload.fieldsArray;
    const byType = new Map(members.map((f) => [f.id - PAYLOAD_FIELD_OFFSET, f.name]));
    for (const [n, name] of tsEnum()) {
      if (n === MessageType.UNKNOWN) expect(byType.has(n)).toBe(false);
      else expect(byType.get(n)).toBe(name.toLowerCase());
    }
    expect(members).toHaveLength(MAX_MESSAGE_TYPE);
  });
});
