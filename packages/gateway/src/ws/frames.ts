import {
  MessageType, encodeJson, encodeProto, type Envelope, type JsonObject, type JsonValue, type UpdateFrame,
} from '@harmonyflow/protocol';
import { loadValueText, stateFromFlat } from '../store/valueCodec';

/**
 * Builds what devices receive for a committed change (SPEC §8 "How changes reach devices"):
 * single-key ops → STATE_UPDATE with the resulting value, PATCH → one STATE_UPDATE with changes,
 * whole replacements → SNAPSHOT_RESPONSE at the new version.
 */
export function updateEnvelope(f: UpdateFrame): Envelope {
  const base = { session_id: f.sessionId, device_id: f.deviceId || undefined, timestamp: f.updatedAt };
  switch (f.op) {
    case 'set':
    case 'delete':
    case 'incr': {
      const payload: Record<string, unknown> = {
        key: f.key,
        operation: f.op === 'set' ? 'SET' : f.op === 'delete' ? 'DELETE' : 'INCREMENT',
        version: f.version,
        device_id: f.deviceId,
      };
      if (f.op !== 'delete') payload.value = JSON.parse(loadValueText(f.value));
      if (f.op === 'incr') payload.delta = f.delta;
      return { type: MessageType.STATE_UPDATE, ...base, payload };
    }
    case 'patch':
      return {
        type: MessageType.STATE_UPDATE,
        ...base,
        payload: { operation: 'PATCH', changes: stateFromFlat(f.fields), deleted_keys: f.deleted, version: f.version, device_id: f.deviceId },
      };
    case 'replace':
    case 'merge':
      return { type: MessageType.SNAPSHOT_RESPONSE, ...base, payload: snapshotPayload(f.sessionId, f.version, stateFromFlat(f.fields), f.updatedAt, f.epoch) };
  }
}

export function snapshotPayload(sessionId: string, version: number, state: JsonObject, updatedAt: number, epoch: string) {
  return { session_id: sessionId, version, state_data: state, updated_at: new Date(updatedAt).toISOString(), epoch };
}

/**
 * `JSON.stringify` of a string, without the call into V8's runtime when nothing needs escaping (ids,
 * keys: the common case, several per update). Control characters, `"`, `\\` and any surrogate (a
 * lone one is escaped by `JSON.stringify`) take the general path.
 */
export function jsonString(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(s);
  }
  return `"${s}"`;
}

/**
 * JSON text of a single-key STATE_UPDATE, spliced from the stored value without parsing it: the
 * hot path for the default subprotocol. Equivalent to encodeJson(updateEnvelope(f)).
 */
export function updateJsonFast(f: UpdateFrame): string | null {
  if (f.op !== 'set' && f.op !== 'incr' && f.op !== 'delete') return null;
  const dev = jsonString(f.deviceId);
  const value = f.op === 'delete' ? '' : `"value":${loadValueText(f.value)},`;
  const delta = f.op === 'incr' ? `,"delta":${JSON.stringify(f.delta)}` : '';
  const op = f.op === 'set' ? 'SET' : f.op === 'delete' ? 'DELETE' : 'INCREMENT';
  return (
    `{"type":5,"session_id":${jsonString(f.sessionId)}${f.deviceId ? `,"device_id":${dev}` : ''},"timestamp":${f.updatedAt},` +
    `"payload":{"key":${jsonString(f.key)},${value}"operation":"${op}","version":${f.version},"device_id":${dev}${delta}}}`
  );
}

/** The STATE_UPDATE_ACK a writer gets, as an envelope (the protobuf subprotocol encodes it). */
export function ackEnvelope(
  sessionId: string, correlationId: string | undefined, version: number, value: JsonValue | undefined,
  mutationId: number | undefined, duplicate: boolean, now: number,
): Envelope {
  const payload: Record<string, unknown> = { correlation_id: correlationId, version };
  if (value !== undefined) payload.value = value;
  if (mutationId !== undefined) payload.mutation_id = mutationId;
  if (duplicate) payload.duplicate = true;
  return { type: MessageType.STATE_UPDATE_ACK, session_id: sessionId, timestamp: now, correlation_id: correlationId, payload };
}

/**
 * The STATE_UPDATE_ACK a writer gets, as JSON text built directly: one per write, so it skips the
 * envelope object and JSON.stringify of it. Equivalent to encodeJson of the ACK envelope.
 */
export function ackJson(
  sessionId: string, correlationId: string | undefined, version: number, value: JsonValue | undefined,
  mutationId: number | undefined, duplicate: boolean, now: number,
): string {
  const corr = correlationId === undefined ? '' : `"correlation_id":${jsonString(correlationId)},`;
  return (
    `{"type":15,"session_id":${jsonString(sessionId)},"timestamp":${now},${corr}"payload":{${corr}"version":${version}` +
    `${value === undefined ? '' : `,"value":${JSON.stringify(value)}`}${mutationId === undefined ? '' : `,"mutation_id":${mutationId}`}` +
    `${duplicate ? ',"duplicate":true' : ''}}}`
  );
}

/** A frame encoded once per codec, on demand: what a fan-out hands every socket. */
export interface EncodedFrame {
  for(binary: boolean): string | Uint8Array;
}

/** A committed update, encoded once per codec on demand (no closures: one per delivered frame). */
export class EncodedUpdate implements EncodedFrame {
  private json: string | null = null;
  private proto: Uint8Array | null = null;

  constructor(private readonly f: UpdateFrame) {}

  for(binary: boolean): string | Uint8Array {
    if (binary) return (this.proto ??= encodeProto(updateEnvelope(this.f)));
    return (this.json ??= updateJsonFast(this.f) ?? encodeJson(updateEnvelope(this.f)));
  }
}

/** An envelope encoded once per codec, on demand. */
export class Encoded implements EncodedFrame {
  private json: string | null = null;
  private proto: Uint8Array | null = null;
  private envelope: Envelope | null = null;

  constructor(private readonly build: () => Envelope) {}

  private env(): Envelope {
    return (this.envelope ??= this.build());
  }

  for(binary: boolean): string | Uint8Array {
    if (binary) return (this.proto ??= encodeProto(this.env()));
    return (this.json ??= encodeJson(this.env()));
  }
}
