import { Packr } from 'msgpackr';
import type { JsonObject } from '@harmonyflow/protocol';
import type { SessionHead, Snapshot } from './types';
import { loadValue } from './valueCodec';

/** The session header (`h` in the meta hash, see lua/lib.lua): a cmsgpack array in this order. */
export const H = { UID: 0, V: 1, EPOCH: 2, CREATED: 3, UPDATED: 4, RECENT: 5, BYTES: 6, DEV: 7, APP: 8, EXP: 9 } as const;
export type Header = [string, number, string, number, number, number, number, string, string, number, ...number[]];

// cmsgpack emits strings as msgpack str; state values are JSON text, so decode them as strings.
export const unpackr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** How the Redis scripts' session records read back: pure decoding, shared by the store and the device registry. */
export function header(raw: Buffer): Header {
  return unpackr.unpack(raw) as Header;
}

export function headOf(h: Header): SessionHead {
  return { userId: h[H.UID], version: h[H.V], epoch: h[H.EPOCH] };
}

/** A session read as read.lua reads it: its header (cmsgpack) and its state records flat. */
export function snapshotOf(sessionId: string, rawHeader: Buffer, records: readonly Buffer[]): Snapshot {
  const h = header(rawHeader);
  return {
    sessionId,
    userId: h[H.UID],
    version: h[H.V],
    epoch: h[H.EPOCH],
    state: stateFromRecords(records.map((b) => b.toString('utf8'))),
    deviceId: h[H.DEV] || null,
    appVersion: h[H.APP] || null,
    createdAt: h[H.CREATED],
    updatedAt: h[H.UPDATED],
    expiresAt: h[H.EXP],
  };
}

/** The state hash's "version|size|stored" records → state object (null prototype: keys are data). */
function stateFromRecords(flat: readonly string[]): JsonObject {
  const out: JsonObject = Object.create(null);
  for (let i = 0; i + 1 < flat.length; i += 2) {
    const raw = flat[i + 1];
    const a = raw.indexOf('|');
    out[flat[i]] = loadValue(raw.slice(raw.indexOf('|', a + 1) + 1));
  }
  return out;
}
