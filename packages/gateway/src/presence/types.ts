import type { DeviceInfo } from '@harmonyflow/protocol';
import { nodeIdOf } from '../cluster/instance';
import type { Snapshot } from '../store/types';

/** What a device says about itself in AUTH. */
export interface DeviceDescriptor {
  readonly deviceId: string;
  readonly deviceType?: string;
  readonly deviceName?: string;
  readonly osVersion?: string;
  readonly appVersion?: string;
}

/**
 * The device registry of each session, shared by all nodes. A device may hold several
 * connections on several nodes; it is online while any node incarnation counts a connection for
 * it and its `last_seen` is within the presence timeout. Counts are kept per node *incarnation*
 * (`instance`, see cluster/instance.ts), so a restarted process never inherits its predecessor's.
 * Records live as long as the session (same expiry), so a disconnected device stays listed as
 * offline until it is kicked or the session expires.
 */
export interface PresenceRegistry {
  /**
   * Counts a connection of the device on `instance`; `first` when the device was not online
   * before. Also returns the session's devices as of that moment (what a joining device is told)
   * and, with `withSnapshot`, when the registry lives beside the session's data (Redis: same
   * slot), the session as of that moment too (null: there is none); `snapshot` is left undefined
   * when the caller must read it itself. (A device joining over WebSocket on Redis is counted in
   * the claim instead, SessionStore.claim's `count`; this is the count of the embedded store, of a
   * connection heard again after going silent, and of any store that does not count in its claim.)
   */
  connect(sessionId: string, device: DeviceDescriptor, instance: string, now: number, withSnapshot?: boolean): Promise<Connected>;
  /** Drops one connection; `last` when the device has no connection left anywhere. */
  disconnect(sessionId: string, deviceId: string, instance: string, now: number): Promise<{ last: boolean }>;
  /**
   * Sets the device's connection count on `instance` outright (reconciliation after failed
   * updates or lost data): 1 when that brought it online, -1 offline, 0 neither.
   */
  setCount(sessionId: string, deviceId: string, instance: string, count: number, now: number): Promise<-1 | 0 | 1>;
  /** Refreshes `last_seen` of devices with traffic (batched by the caller). */
  touch(entries: ReadonlyArray<{ sessionId: string; deviceId: string }>, now: number): Promise<void>;
  /** Forgets a device (kick). False when it was not known. */
  remove(sessionId: string, deviceId: string): Promise<boolean>;
  list(sessionId: string, now: number): Promise<DeviceInfo[]>;
  /**
   * Drops every connection counted for a dead node incarnation. Returns the devices that went
   * offline by it, so the caller can announce DEVICE_LEFT `timeout`.
   */
  reapNode(instance: string, sessionIds: readonly string[], now: number): Promise<Array<{ sessionId: string; deviceId: string }>>;
}

export interface Connected {
  readonly first: boolean;
  readonly devices: DeviceInfo[];
  readonly snapshot?: Snapshot | null;
}

/** The stored record of one device. */
export interface DeviceRecord {
  device_id: string;
  device_type?: string;
  device_name?: string;
  os_version?: string;
  app_version?: string;
  /** Open connections per node incarnation. */
  nodes: Record<string, number>;
  connected_at: number;
  last_seen: number;
}

export function deviceView(r: DeviceRecord, now: number, timeoutMs: number): DeviceInfo {
  let connections = 0;
  let nodeId: string | undefined;
  for (const n of Object.keys(r.nodes)) {
    if (r.nodes[n] > 0) {
      connections += r.nodes[n];
      nodeId = nodeIdOf(n);
    }
  }
  const online = connections > 0 && now - r.last_seen <= timeoutMs;
  return {
    device_id: r.device_id,
    device_type: r.device_type,
    device_name: r.device_name,
    os_version: r.os_version,
    app_version: r.app_version,
    status: online ? 'online' : 'offline',
    node_id: nodeId,
    connected_at: new Date(r.connected_at).toISOString(),
    last_seen: new Date(r.last_seen).toISOString(),
    connections,
  };
}
