import { Root, type Type } from 'protobufjs/light';
import type { Envelope } from '../envelope';
import { MAX_MESSAGE_TYPE, MessageType } from '../messageTypes';
import { SCHEMA_DESCRIPTOR } from '../generated/schema';
import { decodeFailure, type DecodeResult } from './result';
import { MAX_JSON_DEPTH, errorText, isPlainObject, parseJsonText } from './jsonText';

/*
 * Mapping between the canonical JSON-shaped Envelope and `harmonyflow.v1.Envelope`.
 *
 * The tables below are derived once from the schema (reflection), so a field added to the
 * .proto is mapped without touching this file:
 * - payload member of the Envelope oneof for type T has field number 10 + T;
 * - a field `foo_json` (string) carries the JSON value of key `foo` as JSON text;
 * - `extra_json` carries, as one JSON object, every payload key the message has no field for;
 * - proto3 `optional` fields (and message fields) are omitted when absent; implicit-presence
 *   scalars decode to their zero value; repeated fields decode to `[]` unless listed in
 *   ABSENT_WHEN_EMPTY (fields that are optional in the JSON form).
 *
 * Encode builds one small plain object per (sub)message and hands it to protobufjs's generated
 * encoder; there is no intermediate message instance, no `fromObject`/`toObject`.
 */

/** Schema root built from the generated descriptor (no .proto parsing, no fs: browser-safe). */
export const protoRoot: Root = Root.fromJSON(SCHEMA_DESCRIPTOR);
protoRoot.resolveAll();

const NS = 'harmonyflow.v1.';
/** Envelope payload member field number = PAYLOAD_FIELD_OFFSET + MessageType. */
export const PAYLOAD_FIELD_OFFSET = 10;
const EXTRA_FIELD = 'extra_json';
const JSON_SUFFIX = '_json';
/** Repeated fields that are optional in the JSON form: empty on the wire means "absent". */
const ABSENT_WHEN_EMPTY = new Set([
  'StateUpdatePayload.deleted_keys',
  'ErrorPayload.conflicting_keys',
  'DeviceListPayload.devices',
]);

/** `harmonyflow.v1.Envelope` reflection type. */
export const EnvelopeType: Type = protoRoot.lookupType(NS + 'Envelope');

const enum Kind {
  String,
  Int, // 32-bit integers: plain numbers both ways
  Long, // 64-bit integers: numbers on encode, Long (or number) on decode
  Double,
  Bool,
  Json,
  Message,
}

interface FieldSpec {
  /** proto field name */
  proto: string;
  /** JSON key */
  key: string;
  kind: Kind;
  unsigned: boolean;
  repeated: boolean;
  /** explicit presence: omit when absent on the wire */
  presence: boolean;
  /** repeated: omit when empty */
  absentWhenEmpty: boolean;
  sub?: MessageSpec;
}

interface MessageSpec {
  name: string;
  fields: FieldSpec[];
  /** JSON keys with a dedicated field */
  known: Set<string>;
  hasExtra: boolean;
}

const INT_TYPES = new Set(['int32', 'sint32', 'sfixed32', 'uint32', 'fixed32']);
const LONG_TYPES = new Set(['int64', 'sint64', 'sfixed64', 'uint64', 'fixed64']);
const UNSIGNED_TYPES = new Set(['uint32', 'fixed32', 'uint64', 'fixed64']);

const specCache = new Map<Type, MessageSpec>();

function messageSpec(type: Type): MessageSpec {
  const cached = specCache.get(type);
  if (cached) return cached;
  const spec: MessageSpec = { name: type.name, fields: [], known: new Set(), hasExtra: false };
  specCache.set(type, spec);
  for (const f of type.fieldsArray) {
    if (f.name === EXTRA_FIELD) {
      spec.hasExtra = true;
      continue;
    }
    let kind: Kind;
    let key = f.name;
    let sub: MessageSpec | undefined;
    if (f.resolvedType && (f.resolvedType as Type).fieldsArray) {
      kind = Kind.Message;
      sub = messageSpec(f.resolvedType as Type);
    } else if (f.type === 'string') {
      kind = key.endsWith(JSON_SUFFIX) ? Kind.Json : Kind.String;
      if (kind === Kind.Json) key = key.slice(0, -JSON_SUFFIX.length);
    } else if (INT_TYPES.has(f.type)) kind = Kind.Int;
    else if (LONG_TYPES.has(f.type)) kind = Kind.Long;
    else if (f.type === 'double' || f.type === 'float') kind = Kind.Double;
    else if (f.type === 'bool') kind = Kind.Bool;
    else throw new Error(`harmonyflow proto codec: unsupported field type ${type.name}.${f.name}: ${f.type}`);
    spec.known.add(key);
    spec.fields.push({
      proto: f.name,
      key,
      kind,
      unsigned: UNSIGNED_TYPES.has(f.type),
      repeated: f.repeated,
      presence: kind === Kind.Message || f.options?.proto3_optional === true,
      absentWhenEmpty: ABSENT_WHEN_EMPTY.has(`${type.name}.${f.name}`),
      sub,
    });
  }
  return spec;
}

/** Payload member name and mapping per MessageType (undefined: no payload member). */
const memberByType: (string | undefined)[] = [];
const specByType: (MessageSpec | undefined)[] = [];
const payloadMembers = new Set<string>();
for (const f of EnvelopeType.oneofs.payload.fieldsArray) {
  const t = f.id - PAYLOAD_FIELD_OFFSET;
  memberByType[t] = f.name;
  specByType[t] = messageSpec(f.resolvedType as Type);
  payloadMembers.add(f.name);
}

// ---------------------------------------------------------------------------------------------
// encode

const hasOwn = Object.prototype.hasOwnProperty;

function badField(spec: MessageSpec, f: FieldSpec, expected: string): never {
  throw new TypeError(`encodeProto: ${spec.name}.${f.key} must be ${expected}`);
}

function encodeValue(spec: MessageSpec, f: FieldSpec, v: unknown): unknown {
  switch (f.kind) {
    case Kind.String:
      if (typeof v !== 'string') badField(spec, f, 'a string');
      return v;
    case Kind.Int:
      if (typeof v !== 'number' || !Number.isInteger(v) || (f.unsigned && v < 0)) {
        badField(spec, f, f.unsigned ? 'a non-negative integer' : 'an integer');
      }
      return v;
    case Kind.Long:
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || (f.unsigned && v < 0)) {
        badField(spec, f, f.unsigned ? 'a non-negative safe integer' : 'a safe integer');
      }
      return v;
    case Kind.Double:
      if (typeof v !== 'number') badField(spec, f, 'a number');
      return v;
    case Kind.Bool:
      if (typeof v !== 'boolean') badField(spec, f, 'a boolean');
      return v;
    case Kind.Json: {
      const s = JSON.stringify(v);
      if (s === undefined) badField(spec, f, 'a JSON value');
      return s;
    }
    case Kind.Message:
      if (!isPlainObject(v)) badField(spec, f, 'an object');
      return toProto(f.sub!, v);
  }
}

/** Canonical (JSON-shaped) payload object → plain object in the proto message's shape. */
function toProto(spec: MessageSpec, p: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const fields = spec.fields;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    const v = p[f.key];
    if (v === undefined || (v === null && f.kind !== Kind.Json)) continue;
    if (f.repeated) {
      if (!Array.isArray(v)) badField(spec, f, 'an array');
      const arr = new Array<unknown>(v.length);
      for (let j = 0; j < v.length; j++) arr[j] = encodeValue(spec, f, v[j]);
      out[f.proto] = arr;
    } else {
      out[f.proto] = encodeValue(spec, f, v);
    }
  }
  let extra: Record<string, unknown> | undefined;
  for (const k in p) {
    if (spec.known.has(k) || !hasOwn.call(p, k)) continue;
    const v = p[k];
    if (v === undefined) continue;
    // Null-prototype object: a "__proto__" key stays a plain own key, as in the JSON form.
    if (extra === undefined) extra = Object.create(null) as Record<string, unknown>;
    extra[k] = v;
  }
  if (extra !== undefined) {
    if (!spec.hasExtra) throw new TypeError(`encodeProto: ${spec.name} has no field for ${Object.keys(extra).join(', ')}`);
    out[EXTRA_FIELD] = JSON.stringify(extra);
  }
  return out;
}

/**
 * Encodes an envelope as one binary frame (subprotocol `harmonyflow.v1.proto`): a serialized
 * `harmonyflow.v1.Envelope`. `*_json` fields are filled with `JSON.stringify` of the
 * corresponding payload values; payload keys without a field travel in `extra_json`.
 *
 * @throws TypeError if `type` is not a known MessageType or a payload field has the wrong JS
 *   type for its proto field (a programming error; encoders trust their caller).
 */
export function encodeProto(env: Envelope): Uint8Array {
  const type = env.type;
  if (!Number.isInteger(type) || type < 0 || type > MAX_MESSAGE_TYPE) {
    throw new TypeError(`encodeProto: unknown message type ${String(type)}`);
  }
  // int64 on the wire: a fractional JSON-side timestamp is truncated to whole milliseconds.
  const timestamp = env.timestamp ? Math.trunc(env.timestamp) : 0;
  if (!Number.isSafeInteger(timestamp)) throw new TypeError('encodeProto: timestamp must be Unix ms');
  const msg: Record<string, unknown> = { type, timestamp };
  if (env.session_id != null) msg.session_id = env.session_id;
  if (env.user_id != null) msg.user_id = env.user_id;
  if (env.device_id != null) msg.device_id = env.device_id;
  if (env.correlation_id != null) msg.correlation_id = env.correlation_id;
  const member = memberByType[type];
  if (member !== undefined) {
    const p = env.payload as Record<string, unknown> | undefined | null;
    if (p != null && !isPlainObject(p)) throw new TypeError('encodeProto: payload must be an object');
    msg[member] = p ? toProto(specByType[type]!, p) : {};
  }
  return EnvelopeType.encode(msg).finish();
}

// ---------------------------------------------------------------------------------------------
// decode

/** Thrown inside decode helpers; turned into `invalid_message` at the top. */
class BadFrame extends Error {}

/** int64 as decoded by protobufjs (a Long when the `long` package is present, else a number). */
function longToNumber(v: unknown): number {
  const n =
    typeof v === 'number'
      ? v
      : v != null && typeof (v as { toNumber?: unknown }).toNumber === 'function'
        ? (v as { toNumber(): number }).toNumber()
        : Number(v);
  // Versions and Unix-ms times never leave the safe range; beyond it a number would be inexact.
  if (!Number.isSafeInteger(n)) throw new BadFrame(`64-bit integer out of range: ${String(v)}`);
  return n;
}

function parseEmbedded(spec: MessageSpec, key: string, text: string): unknown {
  const r = parseJsonText(text, MAX_JSON_DEPTH);
  if (!r.ok) throw new BadFrame(`${spec.name}.${key}: ${r.message}`);
  return r.value;
}

function decodeValue(spec: MessageSpec, f: FieldSpec, v: unknown): unknown {
  switch (f.kind) {
    case Kind.Long:
      return longToNumber(v);
    case Kind.Json:
      return parseEmbedded(spec, f.key, v as string);
    case Kind.Message:
      return fromProto(f.sub!, v as Record<string, unknown>);
    default:
      return v;
  }
}

/** Decoded proto message → canonical (JSON-shaped) payload object. */
function fromProto(spec: MessageSpec, m: Record<string, unknown>): Record<string, unknown> {
  let out: Record<string, unknown>;
  const extraText = spec.hasExtra && hasOwn.call(m, EXTRA_FIELD) ? m[EXTRA_FIELD] : undefined;
  if (typeof extraText === 'string' && extraText !== '') {
    const extra = parseEmbedded(spec, EXTRA_FIELD, extraText);
    if (!isPlainObject(extra)) throw new BadFrame(`${spec.name}.${EXTRA_FIELD} must hold a JSON object`);
    for (const k in extra) {
      if (spec.known.has(k)) throw new BadFrame(`${spec.name}.${EXTRA_FIELD} repeats field ${k}`);
    }
    // Start from the parsed object (its keys are own properties, "__proto__" included) and add
    // the known fields to it: nothing is copied key by key.
    out = extra;
  } else {
    out = {};
  }
  const fields = spec.fields;
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    const v = m[f.proto];
    if (f.repeated) {
      const arr = v as unknown[] | undefined;
      if (!arr || arr.length === 0) {
        if (!f.absentWhenEmpty) out[f.key] = [];
        continue;
      }
      const res = new Array<unknown>(arr.length);
      for (let j = 0; j < arr.length; j++) res[j] = decodeValue(spec, f, arr[j]);
      out[f.key] = res;
    } else if (f.kind === Kind.Json) {
      if (typeof v === 'string' && v !== '') out[f.key] = parseEmbedded(spec, f.key, v);
    } else if (f.presence) {
      if (v != null && hasOwn.call(m, f.proto)) out[f.key] = decodeValue(spec, f, v);
    } else {
      out[f.key] = decodeValue(spec, f, v);
    }
  }
  return out;
}

/**
 * Decodes one binary frame holding a `harmonyflow.v1.Envelope`. Never throws: garbage or
 * truncated bytes, invalid embedded JSON (or JSON nested deeper than {@link MAX_JSON_DEPTH}),
 * a payload member that does not match `type` → `invalid_message`; a `type` outside 0..18 →
 * `unknown_type`. The result has the same shape {@link decodeJson} produces for the same frame:
 * absent optional fields are omitted, `timestamp` is 0 when unset, no payload member → `{}`.
 */
export function decodeProto(buf: Uint8Array): DecodeResult {
  if (!(buf instanceof Uint8Array)) return decodeFailure('invalid_message', 'frame is not binary');
  let m: Record<string, unknown>;
  try {
    m = EnvelopeType.decode(buf) as unknown as Record<string, unknown>;
  } catch (e) {
    return decodeFailure('invalid_message', `malformed protobuf: ${errorText(e)}`);
  }
  const correlationId =
    typeof m.correlation_id === 'string' && hasOwn.call(m, 'correlation_id') ? m.correlation_id : undefined;
  try {
    const type = m.type as number;
    if (!Number.isInteger(type) || type < 0 || type > MAX_MESSAGE_TYPE) {
      return decodeFailure('unknown_type', `unknown message type ${type}`, correlationId);
    }
    const expected = memberByType[type];
    // The decoder sets own properties only for fields on the wire: a handful of keys to check.
    const present = Object.keys(m);
    for (let i = 0; i < present.length; i++) {
      const name = present[i];
      if (name !== expected && payloadMembers.has(name) && m[name] != null) {
        return decodeFailure('invalid_message', `payload ${name} does not match type ${MessageType[type]}`, correlationId);
      }
    }
    const sub = expected !== undefined ? m[expected] : undefined;
    const payload = sub != null ? fromProto(specByType[type]!, sub as Record<string, unknown>) : {};
    const envelope: Envelope = { type: type as MessageType, timestamp: longToNumber(m.timestamp), payload };
    if (hasOwn.call(m, 'session_id') && typeof m.session_id === 'string') envelope.session_id = m.session_id;
    if (hasOwn.call(m, 'user_id') && typeof m.user_id === 'string') envelope.user_id = m.user_id;
    if (hasOwn.call(m, 'device_id') && typeof m.device_id === 'string') envelope.device_id = m.device_id;
    if (correlationId !== undefined) envelope.correlation_id = correlationId;
    return { ok: true, envelope };
  } catch (e) {
    const message = e instanceof BadFrame ? e.message : `malformed protobuf: ${errorText(e)}`;
    return decodeFailure('invalid_message', message, correlationId);
  }
}
