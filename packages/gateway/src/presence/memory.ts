import type { DeviceInfo } from '@harmonyflow/protocol';
import { deviceView, type Connected, type DeviceDescriptor, type DeviceRecord, type PresenceRegistry } from './types';

/**
 * In-process device registry for the embedded single node. Records of a session are freed with
 * the session (`forgetSession`, wired to the memory store's expiry), as Redis expires them.
 */
export class MemoryPresence implements PresenceRegistry {
  private readonly sessions = new Map<string, Map<string, DeviceRecord>>();

  constructor(private readonly timeoutMs: number) {}

  private devices(sessionId: string): Map<string, DeviceRecord> {
    let m = this.sessions.get(sessionId);
    if (!m) {
      m = new Map();
      this.sessions.set(sessionId, m);
    }
    return m;
  }

  private record(sessionId: string, deviceId: string, now: number): DeviceRecord {
    const devices = this.devices(sessionId);
    let r = devices.get(deviceId);
    if (!r) devices.set(deviceId, (r = { device_id: deviceId, nodes: Object.create(null), connected_at: now, last_seen: now }));
    return r;
  }

  /** Frees a session's records (it expired). */
  forgetSession(sessionId: string): void {
    this.sessions.delete(sessionId);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  /** The session's data lives in the store, not here: the caller reads the snapshot itself. */
  async connect(sessionId: string, d: DeviceDescriptor, instance: string, now: number): Promise<Connected> {
    const r = this.record(sessionId, d.deviceId, now);
    const wasOnline = total(r) > 0;
    if (!wasOnline) r.connected_at = now;
    r.device_type = d.deviceType ?? r.device_type;
    r.device_name = d.deviceName ?? r.device_name;
    r.os_version = d.osVersion ?? r.os_version;
    r.app_version = d.appVersion ?? r.app_version;
    r.nodes[instance] = (r.nodes[instance] ?? 0) + 1;
    r.last_seen = now;
    return { first: !wasOnline, devices: await this.list(sessionId, now) };
  }

  async disconnect(sessionId: string, deviceId: string, instance: string, now: number): Promise<{ last: boolean }> {
    const r = this.sessions.get(sessionId)?.get(deviceId);
    if (!r) return { last: false };
    const before = total(r);
    if (r.nodes[instance]) r.nodes[instance] -= 1;
    if (r.nodes[instance] <= 0) delete r.nodes[instance];
    r.last_seen = now;
    return { last: before > 0 && total(r) === 0 };
  }

  async setCount(sessionId: string, deviceId: string, instance: string, count: number, now: number): Promise<-1 | 0 | 1> {
    const known = this.sessions.get(sessionId)?.get(deviceId);
    if (!known && count === 0) return 0;
    const r = known ?? this.record(sessionId, deviceId, now);
    const before = total(r);
    if (count > 0) r.nodes[instance] = count;
    else delete r.nodes[instance];
    const after = total(r);
    if (before === 0 && after > 0) r.connected_at = now;
    if (after > 0) r.last_seen = now;
    return before === 0 && after > 0 ? 1 : before > 0 && after === 0 ? -1 : 0;
  }

  async touch(entries: ReadonlyArray<{ sessionId: string; deviceId: string }>, now: number): Promise<void> {
    for (const e of entries) {
      const r = this.sessions.get(e.sessionId)?.get(e.deviceId);
      if (r) r.last_seen = now;
    }
  }

  async remove(sessionId: string, deviceId: string): Promise<boolean> {
    return this.sessions.get(sessionId)?.delete(deviceId) ?? false;
  }

  async list(sessionId: string, now: number): Promise<DeviceInfo[]> {
    const m = this.sessions.get(sessionId);
    return m ? [...m.values()].map((r) => deviceView(r, now, this.timeoutMs)) : [];
  }

  async reapNode(instance: string, sessionIds: readonly string[]): Promise<Array<{ sessionId: string; deviceId: string }>> {
    const gone: Array<{ sessionId: string; deviceId: string }> = [];
    for (const sessionId of sessionIds) {
      for (const r of this.sessions.get(sessionId)?.values() ?? []) {
        if (!r.nodes[instance]) continue;
        delete r.nodes[instance];
        if (total(r) === 0) gone.push({ sessionId, deviceId: r.device_id });
      }
    }
    return gone;
  }
}

function total(r: DeviceRecord): number {
  let n = 0;
  for (const k of Object.keys(r.nodes)) n += r.nodes[k];
  return n;
}
