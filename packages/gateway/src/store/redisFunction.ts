import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import type { RedisLike } from './redisClient';

/**
 * One Lua function run as a Redis Function (FUNCTION LOAD once, FCALL per call) rather than a
 * script. A script's top level runs again on every EVALSHA — every helper closure and constant of
 * the write path, about 27k Redis instructions a call, as much as a fifth of a single write; a
 * library's top level runs once, when it is loaded.
 *
 * The library and function names carry a hash of the code (constants included), so nodes of
 * different versions or settings never replace each other's code during a rolling deploy. Old
 * libraries stay until removed (`FUNCTION DELETE hf_<hash>`, see docs/storage.md).
 *
 * The library is loaded when this object is made, and calls wait for that load: a call must never
 * find the function missing and be retried, because calls sent after it could then be applied
 * before it. Redis persists and replicates libraries; if one is lost anyway (a restart without
 * persistence, a new shard), the calls that find it missing fail (the caller's store-unavailable
 * path: the client is told and retries), the library is loaded again, and calls made meanwhile
 * wait for that load, in the order they were made. After every reconnection it is loaded again
 * before any call goes out, so a restarted Redis costs no failed write.
 */
export class RedisFunction {
  /** The name FCALL takes: first argument of every call. */
  readonly name: string;
  private readonly code: string;
  private loading: Promise<void> | null = null;

  /** `body` defines a local Lua function named `fn` taking (keys, args). */
  constructor(private readonly client: RedisLike, body: string, fn: string) {
    const hash = createHash('sha1').update(body).digest('hex').slice(0, 16);
    this.name = `${fn}_${hash}`;
    this.code = `#!lua name=hf_${hash}\n${body}\nredis.register_function('${this.name}', ${fn})\n`;
    this.load();
    // A Redis that restarted may have come back without it (no persistence): load it again before
    // anything else is sent on the new connection (commands are not queued while disconnected).
    client.on('ready', () => void this.load());
  }

  /**
   * FCALL with `args` = [this.name, numKeys, ...keys, ...arguments] (built by the caller, so the
   * hot path copies no argument list), replies as Buffers. Rejects with FunctionMissingError when
   * Redis lost the library (a load is then under way).
   */
  callBuffer(args: (string | number)[]): Promise<unknown> {
    const sent = this.loading ? this.loading.then(() => this.client.callBuffer('FCALL', args)) : this.client.callBuffer('FCALL', args);
    return sent.catch((err: unknown) => {
      if (!isMissing(err)) throw err;
      this.load();
      throw new FunctionMissingError(this.name);
    });
  }

  /**
   * Loads the library on Redis, or on every primary of a Redis Cluster; one load at a time. A
   * failed load (Redis away) is not an error here: the next call that finds the function missing
   * starts another.
   */
  load(): Promise<void> {
    this.loading ??= this.loadEverywhere().then(
      () => {
        this.loading = null;
      },
      () => {
        this.loading = null;
      },
    );
    return this.loading;
  }

  private async loadEverywhere(): Promise<void> {
    const targets: Array<Redis | Cluster> = (this.client as { isCluster?: boolean }).isCluster
      ? (this.client as Cluster).nodes('master')
      : [this.client];
    await Promise.all(targets.map((t) => t.call('FUNCTION', 'LOAD', 'REPLACE', this.code)));
  }
}

/** Redis does not have the function (it lost its libraries); counts as the store being unavailable. */
export class FunctionMissingError extends Error {
  constructor(name: string) {
    super(`Redis function ${name} is missing; loading it again`);
  }
}

function isMissing(err: unknown): boolean {
  return err instanceof Error && /Function not found/i.test(err.message);
}
