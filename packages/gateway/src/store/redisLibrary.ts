import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { EncodedCommand } from './encodedCommand';
import type { RedisLike } from './redisClient';

/**
 * Lua functions run as one Redis Function library (FUNCTION LOAD once, FCALL per call) rather than
 * as scripts. A script's top level runs again on every EVALSHA — every helper closure and constant
 * of the write path, about 27k Redis instructions a call, as much as a fifth of a single write; a
 * library's top level runs once, when it is loaded. All of the store's functions (the write path
 * and the AUTH claim) share one library: one load at start and after every reconnection, one
 * library per code version to list or delete, and one loading state that every call waits on.
 *
 * The library and function names carry a hash of the code (constants included), so nodes of
 * different versions or settings never replace each other's code during a rolling deploy. Old
 * libraries stay until removed (`FUNCTION DELETE hf_<hash>`, see docs/storage.md).
 *
 * The code is loaded when this object is made and after every reconnection, and calls wait for
 * that load: a call must never find the code missing and be retried, because calls sent after it
 * could then be applied before it. Redis persists and replicates libraries; if one is lost anyway
 * (a restart without persistence, a new shard), the calls that find it missing fail (the caller's
 * store-unavailable path: the client is told and retries), the code is loaded again, and calls
 * made meanwhile wait for that load and go out in the order they were made, all at once when it
 * ends. Other commands that must stay in order with the calls (reads after writes on the same
 * connection) wait in the same queue: `whenLoaded`. A call that can simply be made again and has
 * nothing queued behind it that depends on its order (a claim) uses `callBufferOrRetry` instead.
 *
 * A Redis that refuses Functions (an ACL without FUNCTION, a managed service that renamed it) gets
 * the same code as scripts (SCRIPT LOAD, EVALSHA; one per function), with the same loading rules.
 */
export class RedisLibrary {
  private mode: 'function' | 'script' = 'function';
  private readonly library: string;
  private readonly functions: RedisFunction[];
  readonly cluster: boolean;
  private loading = false;
  /** Sends held while a load is under way, in the order they were made. */
  private waiting: Array<() => void> = [];

  /**
   * `shared`: code every function uses (constants, helpers); each of `functions` has a body that
   * defines a local Lua function `name` taking (keys, args). As scripts (a Redis that refuses
   * Functions), each runs `shared` and its own body only.
   */
  constructor(
    readonly client: RedisLike,
    shared: string,
    functions: ReadonlyArray<{ readonly name: string; readonly body: string }>,
    /** Operational notices: a fallback to scripts, a failed load. */
    private readonly notice: (message: string) => void = () => undefined,
  ) {
    this.cluster = (client as { isCluster?: boolean }).isCluster === true;
    const body = [shared, ...functions.map((f) => f.body)].join('\n');
    const hash = createHash('sha1').update(body).digest('hex').slice(0, 16);
    this.functions = functions.map(({ name, body: own }) =>
      new RedisFunction(this, name, `${name}_${hash}`, `${shared}\n${own}\nreturn ${name}(KEYS, ARGV)\n`));
    const register = this.functions.map((f) => `redis.register_function('${f.target}', ${f.name})\n`).join('');
    this.library = `#!lua name=hf_${hash}\n${body}\n${register}`;
    this.load();
    // A Redis that restarted may have come back without it (no persistence): load it again before
    // anything else is sent on the new connection (commands are not queued while disconnected).
    client.on('ready', () => this.load());
  }

  /** The library's function `name` (one of the names it was made with). */
  function(name: string): RedisFunction {
    const f = this.functions.find((x) => x.name === name);
    if (!f) throw new Error(`the Redis library has no function ${name}`);
    return f;
  }

  get inScriptMode(): boolean {
    return this.mode === 'script';
  }

  /** Runs `send` now, or, while a load is under way, right after it, in the order of the calls. */
  whenLoaded<T>(send: () => Promise<T>): Promise<T> {
    if (!this.loading) return send();
    return new Promise<T>((resolve, reject) => {
      this.waiting.push(() => {
        // A send that throws must not stop release() from sending the ones queued behind it.
        try {
          send().then(resolve, reject);
        } catch (err) {
          reject(err);
        }
      });
    });
  }

  /**
   * Loads the code on Redis, or on every primary of a Redis Cluster; one load at a time (a call
   * while one is under way joins it: however many calls found the code missing). A failed load
   * (Redis away) is reported, not thrown: the next call that finds the code missing, or the next
   * reconnection, starts another.
   */
  load(): void {
    if (this.loading) return;
    this.loading = true;
    this.loadEverywhere().then(
      () => this.release(),
      (err: unknown) => {
        this.notice(`loading the Redis library (${this.functions.map((f) => f.name).join(', ')}) failed: ${(err as Error).message}`);
        this.release();
      },
    );
  }

  /** Ends the load and sends what waited for it, synchronously: nothing made later can go first. */
  private release(): void {
    this.loading = false;
    const waiting = this.waiting;
    this.waiting = [];
    for (const send of waiting) send();
  }

  private async loadEverywhere(): Promise<void> {
    const targets: Array<Redis | Cluster> = this.cluster
      ? (this.client as Cluster).nodes('master')
      : [this.client];
    if (this.mode === 'function') {
      try {
        await Promise.all(targets.map((t) => t.call('FUNCTION', 'LOAD', 'REPLACE', this.library)));
        return;
      } catch (err) {
        if (!isRefused(err)) throw err;
        this.mode = 'script';
        this.notice(`Redis refused FUNCTION LOAD (${(err as Error).message}); ${this.functions.map((f) => f.name).join(', ')} run as scripts (EVALSHA), their helpers made again on every call`);
      }
    }
    await Promise.all(targets.flatMap((t) => this.functions.map((f) => t.call('SCRIPT', 'LOAD', f.script))));
  }
}

/** One function of a RedisLibrary: how it is called (FCALL, or EVALSHA in script mode). */
export class RedisFunction {
  /** EVALSHA's SHA-1 of `script`. */
  private readonly sha: string;

  constructor(
    private readonly lib: RedisLibrary,
    /** The Lua function's name in the code; also how notices name it. */
    readonly name: string,
    /** FCALL's function name: `name` and the code's hash. */
    readonly target: string,
    /** The code as a script that runs this function, for a Redis that refuses Functions. */
    readonly script: string,
  ) {
    this.sha = createHash('sha1').update(script).digest('hex');
  }

  /**
   * Calls the code with `args` = [numKeys, ...keys, ...arguments], replies as Buffers. Rejects with
   * CodeMissingError when Redis lost the code (a load is then under way).
   */
  callBuffer(args: (string | number)[]): Promise<unknown> {
    return this.lib.whenLoaded(() => {
      const script = this.lib.inScriptMode;
      const command = script ? 'EVALSHA' : 'FCALL';
      const target = script ? this.sha : this.target;
      let reply: Promise<unknown>;
      if (this.lib.cluster) {
        // The list as it is: ioredis flattens it into its own copy anyway (a spread copy
        // `[target, ...args]` took V8's slow element path); it reads the keys to route by.
        const call = this.lib.client.callBuffer as (command: string, ...args: unknown[]) => Promise<unknown>;
        reply = call.call(this.lib.client, command, target, args);
      } else {
        const encoded = new EncodedCommand(command, target, args);
        (this.lib.client as Redis).sendCommand(encoded);
        reply = encoded.promise;
      }
      return reply.catch((err: unknown) => {
        if (!isMissing(err)) throw err;
        this.lib.load();
        throw new CodeMissingError(this.name);
      });
    });
  }

  /**
   * callBuffer for a call that can simply be made again (it ran nowhere when the code was missing,
   * and nothing queued behind it depends on its order: a claim). One that finds the code missing
   * waits for the load it started and goes once more, instead of failing.
   */
  async callBufferOrRetry(args: (string | number)[]): Promise<unknown> {
    try {
      return await this.callBuffer(args);
    } catch (err) {
      if (!(err instanceof CodeMissingError)) throw err;
      return this.callBuffer(args);
    }
  }
}

/** Redis does not have the code (it lost it); counts as the store being unavailable. */
class CodeMissingError extends Error {
  constructor(name: string) {
    super(`Redis code ${name} is missing; loading it again`);
  }
}

function isMissing(err: unknown): boolean {
  return err instanceof Error && /Function not found|NOSCRIPT/i.test(err.message);
}

/**
 * FUNCTION LOAD refused for good: the command is unknown (renamed away) or not permitted (ACL).
 * Not a transient refusal such as MISCONF (writes disabled after a failed save).
 */
function isRefused(err: unknown): boolean {
  return err instanceof Error && /unknown command|NOPERM/i.test(err.message);
}
