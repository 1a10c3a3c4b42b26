import { StoreUnavailableError } from '../errors';
import type { KeySpace } from '../store/keys';
import type { RedisLike } from '../store/redisClient';
import type { Logger } from '../log';
import type { Bus } from './types';

/**
 * Redis pub/sub bus. Session channels share their session's hash tag; on Redis Cluster they are
 * sharded channels (SSUBSCRIBE/SPUBLISH), so a session's traffic stays on its shard. Subscribe and
 * unsubscribe calls made in the same tick are sent as one command.
 */
export class RedisBus implements Bus {
  private handler: (data: Uint8Array) => void = () => {};
  private resubscribed: () => void = () => {};
  private readonly cluster: boolean;
  private pendingSub = new Set<string>();
  private pendingUnsub = new Set<string>();
  private flushScheduled: Promise<void> | null = null;
  private everReady = false;

  constructor(
    private readonly sub: RedisLike,
    private readonly pub: RedisLike,
    private readonly keys: KeySpace,
    private readonly log: Logger,
  ) {
    this.cluster = (sub as { isCluster?: boolean }).isCluster === true;
    const onMessage = (_channel: Buffer, data: Buffer) => this.handler(data);
    sub.on('messageBuffer', onMessage);
    sub.on('smessageBuffer', onMessage);
    sub.on('ready', () => {
      // ioredis resubscribes by itself; frames published while we were away are lost, so the hub
      // must resync its sockets from the update log — but only once the resubscriptions are in
      // place: a command on the same connection answers after the ones queued before it.
      if (!this.everReady) return;
      (this.sub.subscribe(this.keys.globalChannel()) as Promise<unknown>).then(
        () => this.resubscribed(),
        (err: Error) => this.log.warn({ err: err.message }, 'resubscribe check failed'),
      );
    });
  }

  async start(): Promise<void> {
    await this.sub.subscribe(this.keys.globalChannel());
    this.everReady = true;
  }

  onFrame(handler: (data: Uint8Array) => void): void {
    this.handler = handler;
  }

  onResubscribed(handler: () => void): void {
    this.resubscribed = handler;
  }

  subscribe(sessionIds: readonly string[]): Promise<void> {
    for (const id of sessionIds) {
      this.pendingUnsub.delete(id);
      this.pendingSub.add(id);
    }
    return this.scheduleFlush();
  }

  unsubscribe(sessionIds: readonly string[]): Promise<void> {
    for (const id of sessionIds) {
      this.pendingSub.delete(id);
      this.pendingUnsub.add(id);
    }
    return this.scheduleFlush();
  }

  private scheduleFlush(): Promise<void> {
    this.flushScheduled ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush());
    return this.flushScheduled;
  }

  private async flush(): Promise<void> {
    this.flushScheduled = null;
    const subs = [...this.pendingSub].map((id) => this.keys.session(id).channel);
    const unsubs = [...this.pendingUnsub].map((id) => this.keys.session(id).channel);
    this.pendingSub.clear();
    this.pendingUnsub.clear();
    const s = this.sub as unknown as Record<string, (...c: string[]) => Promise<unknown>>;
    if (this.cluster) {
      // Sharded subscriptions must be per slot; sessions differ in slot, so one call each.
      await Promise.all([...subs.map((c) => s.ssubscribe(c)), ...unsubs.map((c) => s.sunsubscribe(c))]);
      return;
    }
    await Promise.all([subs.length ? s.subscribe(...subs) : null, unsubs.length ? s.unsubscribe(...unsubs) : null]);
  }

  async publish(sessionId: string, data: Uint8Array): Promise<void> {
    const channel = this.keys.session(sessionId).channel;
    try {
      if (this.cluster) await (this.pub as unknown as { spublish(c: string, d: Buffer): Promise<number> }).spublish(channel, Buffer.from(data));
      else await this.pub.publish(channel, Buffer.from(data));
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
  }

  async publishGlobal(data: Uint8Array): Promise<void> {
    try {
      await this.pub.publish(this.keys.globalChannel(), Buffer.from(data));
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
  }

  async close(): Promise<void> {
    this.sub.disconnect();
    this.log.debug('bus closed');
  }
}
