import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { DeviceInfo } from '@harmonyflow/protocol';
import { StoreUnavailableError } from '../errors';
import type { KeySpace } from '../store/keys';
import type { RedisLike } from '../store/redisClient';
import { connectedOf, descriptorJson, deviceOf } from './connectReply';
import type { Connected, DeviceDescriptor, PresenceRegistry } from './types';

type PresenceScript = {
  hfPresence(numKeys: number, ...args: (string | number)[]): Promise<number | string[]>;
  hfPresenceBuffer(numKeys: number, ...args: (string | number)[]): Promise<unknown>;
  hfTouch(numKeys: number, ...args: (string | number)[]): Promise<number>;
};

/**
 * Sessions per touch call on one Redis: Redis runs nothing else while a script runs, so a chunk
 * stays around a millisecond of its time. On Redis Cluster sessions sit in different slots: one.
 */
const TOUCH_CHUNK = 64;

/** Device registry in each session's `devices` hash; every change is one Lua script. */
export class RedisPresence implements PresenceRegistry {
  private readonly r: RedisLike & PresenceScript;
  private readonly cluster: boolean;

  constructor(client: RedisLike, private readonly keys: KeySpace, private readonly timeoutMs: number, private readonly ttlMs: number) {
    const lua = (name: string) => readFileSync(path.join(__dirname, `../store/lua/${name}.lua`), 'utf8');
    client.defineCommand('hfPresence', { lua: `${lua('presenceLib')}\n${lua('presence')}` });
    client.defineCommand('hfTouch', { lua: `${lua('presenceLib')}\n${lua('touch')}` });
    this.r = client as RedisLike & PresenceScript;
    this.cluster = (client as { isCluster?: boolean }).isCluster === true;
  }

  private async run(sessionId: string, op: string, now: number, ...args: (string | number)[]): Promise<number | string[]> {
    const k = this.keys.session(sessionId);
    try {
      return await this.r.hfPresence(2, k.devices, k.meta, op, now, this.ttlMs, ...args);
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
  }

  async connect(sessionId: string, d: DeviceDescriptor, instance: string, now: number, withSnapshot = false): Promise<Connected> {
    // With the state hash as a third key the script also reads the session, for the joining
    // socket's snapshot (the keys share one slot): an AUTH makes one Redis command less. Replies as
    // Buffers: the header is binary (cmsgpack).
    const k = this.keys.session(sessionId);
    const keys = withSnapshot ? [k.devices, k.meta, k.state] : [k.devices, k.meta];
    let reply: unknown[];
    try {
      reply = (await this.r.hfPresenceBuffer(keys.length, ...keys, 'connect', now, this.ttlMs, instance, d.deviceId, descriptorJson(d))) as unknown[];
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
    return connectedOf(sessionId, reply, 0, withSnapshot, now, this.timeoutMs);
  }

  async disconnect(sessionId: string, deviceId: string, instance: string, now: number): Promise<{ last: boolean }> {
    return { last: (await this.run(sessionId, 'disconnect', now, instance, deviceId)) === 1 };
  }

  async setCount(sessionId: string, deviceId: string, instance: string, count: number, now: number): Promise<-1 | 0 | 1> {
    return (await this.run(sessionId, 'set', now, instance, deviceId, count)) as -1 | 0 | 1;
  }

  async touch(entries: ReadonlyArray<{ sessionId: string; deviceId: string }>, now: number): Promise<void> {
    const bySession = new Map<string, string[]>();
    for (const e of entries) {
      const list = bySession.get(e.sessionId);
      if (list) list.push(e.deviceId);
      else bySession.set(e.sessionId, [e.deviceId]);
    }
    const sessions = [...bySession];
    const chunk = this.cluster ? 1 : TOUCH_CHUNK;
    const calls: Promise<number>[] = [];
    for (let i = 0; i < sessions.length; i += chunk) {
      const keys: string[] = [];
      const args: (string | number)[] = [now];
      for (const [sid, ids] of sessions.slice(i, i + chunk)) {
        keys.push(this.keys.session(sid).devices);
        args.push(ids.length, ...ids);
      }
      calls.push(this.r.hfTouch(keys.length, ...keys, ...args));
    }
    try {
      await Promise.all(calls);
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
  }

  async remove(sessionId: string, deviceId: string): Promise<boolean> {
    try {
      return (await this.r.hdel(this.keys.session(sessionId).devices, deviceId)) === 1;
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
  }

  async list(sessionId: string, now: number): Promise<DeviceInfo[]> {
    let all: Record<string, string>;
    try {
      all = await this.r.hgetall(this.keys.session(sessionId).devices);
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
    return Object.values(all).map((raw) => deviceOf(raw, now, this.timeoutMs));
  }

  async reapNode(instance: string, sessionIds: readonly string[], now: number): Promise<Array<{ sessionId: string; deviceId: string }>> {
    const gone: Array<{ sessionId: string; deviceId: string }> = [];
    const results = await Promise.all(sessionIds.map((id) => this.run(id, 'reap', now, instance)));
    results.forEach((ids, i) => {
      for (const deviceId of ids as string[]) gone.push({ sessionId: sessionIds[i], deviceId });
    });
    return gone;
  }
}
