import { Packr } from 'msgpackr';

/**
 * Internal bus frames (msgpack arrays) exchanged between gateway nodes over Redis pub/sub and kept
 * in each session's update log. State UPDATE frames are built inside the store's Lua script with
 * `cmsgpack`, so their layout is positional and must match `packages/gateway/src/store/lua/mutate.lua`.
 * Every frame carries the origin node id so a node can recognise its own traffic.
 */
export const BusKind = {
  UPDATE: 1,
  DEVICE_JOINED: 2,
  DEVICE_LEFT: 3,
  KICK: 4,
  HANDOFF_REQUESTED: 5,
  HANDOFF_COMPLETED: 6,
  BROADCAST: 7,
  CANARY: 8,
  RESYNC: 9,
} as const;
export type BusKind = (typeof BusKind)[keyof typeof BusKind];

export type UpdateOp = 'set' | 'delete' | 'incr' | 'patch' | 'replace' | 'merge';

/**
 * A committed state change. `value`/`fields` hold values in stored form (JSON text, or
 * `~z:`+base64 deflate for large values) so the Lua script never parses JSON.
 */
export interface UpdateFrame {
  kind: typeof BusKind.UPDATE;
  sessionId: string;
  version: number;
  /** The writing process: a node incarnation id, never reused by another process. */
  originNode: string;
  originConn: number;
  deviceId: string;
  correlationId: string;
  op: UpdateOp;
  key: string;
  value: string;
  delta: number;
  /** Flat [key, storedValue, …]: the changes (patch) or the whole state (replace, merge). */
  fields: string[];
  deleted: string[];
  updatedAt: number;
  /** The session incarnation this version belongs to (SPEC §9): versions restart in a new epoch. */
  epoch: string;
}

/** Presence, kicks, handoffs, broadcasts: small frames that are not part of the version stream. */
export interface ControlFrame {
  kind: Exclude<BusKind, typeof BusKind.UPDATE>;
  sessionId: string;
  originNode: string;
  /** Kind-specific body (device info, reason, token, message…). */
  body: Record<string, unknown>;
}

export type BusFrame = UpdateFrame | ControlFrame;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true, int64AsType: 'number' });

/** Encodes an UPDATE frame exactly as the Lua script does (used by the in-memory store). */
export function encodeUpdateFrame(f: Omit<UpdateFrame, 'kind'>): Uint8Array {
  return packr.pack([
    BusKind.UPDATE, f.sessionId, f.version, f.originNode, f.originConn, f.deviceId, f.correlationId,
    f.op, f.key, f.value, f.delta, f.fields, f.deleted, f.updatedAt, f.epoch,
  ]);
}

/** Encodes a control frame: `[kind, sessionId, originNode, body]`. */
export function encodeControlFrame(f: ControlFrame): Uint8Array {
  return packr.pack([f.kind, f.sessionId, f.originNode, f.body]);
}

/** Decodes any bus frame; returns null for anything malformed (a bad frame must not stop the bus). */
export function decodeBusFrame(data: Uint8Array): BusFrame | null {
  let a: unknown;
  try {
    a = packr.unpack(data);
  } catch {
    return null;
  }
  if (!Array.isArray(a) || typeof a[0] !== 'number') return null;
  if (a[0] === BusKind.UPDATE) {
    if (a.length < 15 || typeof a[1] !== 'string' || typeof a[2] !== 'number') return null;
    return {
      kind: BusKind.UPDATE,
      sessionId: a[1],
      version: a[2],
      originNode: String(a[3]),
      originConn: Number(a[4]) || 0,
      deviceId: String(a[5] ?? ''),
      correlationId: String(a[6] ?? ''),
      op: a[7] as UpdateOp,
      key: String(a[8] ?? ''),
      value: String(a[9] ?? ''),
      delta: Number(a[10]) || 0,
      fields: Array.isArray(a[11]) ? (a[11] as unknown[]).map(String) : [],
      deleted: Array.isArray(a[12]) ? (a[12] as unknown[]).map(String) : [],
      updatedAt: Number(a[13]) || 0,
      epoch: String(a[14] ?? ''),
    };
  }
  if (a[0] < 2 || a[0] > 9 || typeof a[1] !== 'string' || typeof a[2] !== 'string') return null;
  const body = a[3] && typeof a[3] === 'object' && !Array.isArray(a[3]) ? (a[3] as Record<string, unknown>) : {};
  return { kind: a[0] as ControlFrame['kind'], sessionId: a[1], originNode: a[2], body };
}
