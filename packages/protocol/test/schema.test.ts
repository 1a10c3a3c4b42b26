import { execFileSync } from 'child_process';
import * as path from 'path';
import * as protobuf from 'protobufjs';
import { SCHEMA_DESCRIPTOR } from '../src';
import { samples } from './fixtures/samples';
import { EnvelopeType, MessageType } from '../src';
import type { Type } from 'protobufjs';

const REPO = path.resolve(__dirname, '../../..');
const PROTO_FILE = path.join(REPO, 'proto/harmonyflow/v1/session.proto');

describe('generated schema', () => {
  it('src/generated/schema.ts matches proto/ (descriptor)', () => {
    const root = new protobuf.Root().loadSync(PROTO_FILE, { keepCase: true });
    expect(JSON.parse(JSON.stringify(root.toJSON()))).toEqual(SCHEMA_DESCRIPTOR);
  });

  it('src/generated/schema.ts is byte-for-byte what scripts/gen-proto.mjs writes', () => {
    // exits non-zero (and execFileSync throws) when the file is stale
    const out = execFileSync(process.execPath, [path.join(REPO, 'scripts/gen-proto.mjs'), '--check'], { cwd: REPO, encoding: 'utf8' });
    expect(out).toMatch(/up to date/);
  });

  it('every payload field of the schema is exercised by the round-trip samples', () => {
    const keysByType = new Map<number, Set<string>>();
    const deviceKeys = new Set<string>();
    for (const { env } of samples) {
      const set = keysByType.get(env.type) ?? new Set<string>();
      keysByType.set(env.type, set);
      for (const k of Object.keys(env.payload)) set.add(k);
      const p = env.payload as { devices?: object[]; device?: object };
      for (const d of [...(p.devices ?? []), ...(p.device ? [p.device] : [])]) for (const k of Object.keys(d)) deviceKeys.add(k);
    }
    const jsonKey = (name: string) => (name.endsWith('_json') ? name.slice(0, -5) : name);
    for (const member of EnvelopeType.oneofs.payload.fieldsArray) {
      const type = (member.id - 10) as MessageType;
      const fields = (member.resolvedType as Type).fieldsArray.filter((f) => f.name !== 'extra_json');
      for (const f of fields) expect([MessageType[type], jsonKey(f.name), keysByType.get(type)?.has(jsonKey(f.name))]).toEqual([MessageType[type], jsonKey(f.name), true]);
    }
    const device = EnvelopeType.root.lookupType('harmonyflow.v1.DeviceInfo');
    for (const f of device.fieldsArray) if (f.name !== 'extra_json') expect([f.name, deviceKeys.has(f.name)]).toEqual([f.name, true]);
  });
});
