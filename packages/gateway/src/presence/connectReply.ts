import type { DeviceInfo } from '@harmonyflow/protocol';
import { snapshotOf } from '../store/sessionRecords';
import { deviceView, type Connected, type DeviceDescriptor, type DeviceRecord } from './types';

/**
 * The Redis registry's connect, both ways: the descriptor as the scripts take it and their reply as
 * `Connected` (store/lua/presenceLib.lua hf_device_connect, run by presence.lua on its own and by
 * join.lua after a claim).
 */
export function descriptorJson(d: DeviceDescriptor): string {
  return JSON.stringify({ device_type: d.deviceType, device_name: d.deviceName, os_version: d.osVersion, app_version: d.appVersion });
}

/**
 * hf_device_connect's reply, starting at `reply[at]` (Buffers: the header is binary cmsgpack):
 * first, records flat, then with `withSnapshot` the session's header and state records when it exists.
 */
export function connectedOf(
  sessionId: string, reply: readonly unknown[], at: number, withSnapshot: boolean, now: number, timeoutMs: number,
): Connected {
  const flat = reply[at + 1] as Buffer[];
  const devices: DeviceInfo[] = [];
  for (let i = 1; i < flat.length; i += 2) devices.push(deviceOf(flat[i].toString('utf8'), now, timeoutMs));
  const first = reply[at] === 1;
  if (!withSnapshot) return { first, devices };
  const rawHeader = reply[at + 2] as Buffer | undefined;
  return { first, devices, snapshot: rawHeader ? snapshotOf(sessionId, rawHeader, (reply[at + 3] as Buffer[] | undefined) ?? []) : null };
}

/** A stored device record (JSON) as clients see it. */
export function deviceOf(raw: string, now: number, timeoutMs: number): DeviceInfo {
  const r = JSON.parse(raw) as DeviceRecord;
  if (!r.nodes || Array.isArray(r.nodes)) r.nodes = {};
  return deviceView(r, now, timeoutMs);
}
