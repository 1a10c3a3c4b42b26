import type { Cluster, Command } from 'ioredis';
import type Redis from 'ioredis';

/** What this needs of a command: ioredis marks it resolved when it settles; the rest is ours. */
interface TimedCommand {
  readonly isResolved: boolean;
  reject(err: Error): void;
  /** When it was sent (performance.now()), HELD while coalesceWrites holds it back. */
  hfSentAt?: number;
  /** Failed as timed out; its reply may still come (it stays in the queue until then). */
  hfExpired?: boolean;
}

/**
 * Command timeouts that do not fail a command whose reply has already arrived, from one sweep per
 * connection instead of a timer per command.
 *
 * ioredis fails a command from a timer, and timers run at the start of an event-loop turn, before
 * the poll phase reads sockets. After a long stretch of work (a burst of frames read in one turn, a
 * GC pause, a saturated CPU), every command sent before it had its timer expire first and was failed
 * as "timed out" while its reply sat unread in the socket: a write answered `store_unavailable`
 * that had been applied. Here an expired command is only marked, and failed after the next poll
 * phase (setImmediate) if it is still unanswered then, by which time any reply already received has
 * been read.
 *
 * A timer per command (ioredis's `commandTimeout`) cost a timer-list insert, a clear and a property
 * delete on every write. Instead each command notes the time it was sent, and a sweep every
 * `ms / 20` walks the connection's queue of commands awaiting a reply (ioredis's `commandQueue`, in
 * send order) and fails those unanswered after `ms` (so after between `ms` and `ms * 1.05`). The send
 * time is read per command, not from a clock the sweep keeps: a busy event loop runs the sweep late,
 * and a stale clock would have aged the commands sent meanwhile. Nothing here holds a command: one
 * kept until the next sweep outlived the young generation under load and left the old one to collect it.
 * A command the connection holds back to write with the rest of its turn (coalesceWrites) is timed
 * from its write (holdTimeout, restartTimeout). The caller must not also give ioredis a
 * `commandTimeout`.
 */
export function timeoutAfterPoll(client: Redis | Cluster, ms: number): void {
  if ((client as Cluster).isCluster) {
    // Every shard connection is its own client with its own socket.
    const nodes = new Set<Redis>();
    shardsOf.set(client as Cluster, nodes);
    (client as Cluster).on('+node', (node: Redis) => {
      nodes.add(node);
      armNode(node, ms);
    });
    (client as Cluster).on('-node', (node: Redis) => nodes.delete(node));
    return;
  }
  armNode(client as Redis, ms);
}

/** The shard connections of each armed Redis Cluster client. */
const shardsOf = new WeakMap<Cluster, Set<Redis>>();

/**
 * How long the oldest command still awaiting its reply on an armed connection (on Redis Cluster:
 * on any shard's) has been waiting at `now` (performance.now()), in ms; 0 when none is. A command failed as timed out counts
 * until its reply does come or the connection drops (ioredis keeps it queued until then): Redis
 * may still run it, and a write sent behind it waits as long.
 */
export function unansweredMs(client: Redis | Cluster, now = performance.now()): number {
  if (!(client as Cluster).isCluster) return oldestWait(client as Redis, now);
  const shards = shardsOf.get(client as Cluster);
  if (!shards) return 0; // not armed: its commands carry no send times
  let most = 0;
  for (const node of shards) most = Math.max(most, oldestWait(node, now));
  return most;
}

function oldestWait(client: Redis, now: number): number {
  // Replies come in send order: the queue's head is the oldest command still unanswered.
  const head = client.commandQueue.peekAt(0);
  const sentAt = head ? (head.command as unknown as TimedCommand).hfSentAt : undefined;
  // (A held head was not written yet: nothing before it waits. now - HELD is -Infinity.)
  return sentAt === undefined ? 0 : Math.max(0, now - sentAt);
}

/** `now - HELD` is below any timeout. */
const HELD = Infinity;

/**
 * A command written to the socket later than it was sent (coalesceWrites holds a turn's commands
 * until the turn ends) is timed from its write: held, the sweep passes it by (and, since it
 * stands in send order, every command after it); written, its time starts.
 */
export function holdTimeout(command: Command): void {
  const c = command as unknown as TimedCommand;
  if (c.hfSentAt !== undefined) c.hfSentAt = HELD;
}

export function restartTimeout(command: Command, now: number): void {
  const c = command as unknown as TimedCommand;
  if (c.hfSentAt === HELD) c.hfSentAt = now;
}

function armNode(client: Redis, ms: number): void {
  const every = Math.max(10, Math.floor(ms / 20));

  const sweep = (): void => {
    const now = performance.now();
    const queue = client.commandQueue;
    let due: TimedCommand[] | null = null;
    for (let i = 0; i < queue.length; i++) {
      const c = queue.peekAt(i)!.command as unknown as TimedCommand;
      if (c.isResolved || c.hfExpired || c.hfSentAt === undefined) continue;
      if (now - c.hfSentAt < ms) break;
      c.hfExpired = true; // later sweeps pass over it while its reply is awaited
      (due ??= []).push(c);
    }
    if (due !== null) {
      const expired = due;
      setImmediate(() => {
        for (const c of expired) if (!c.isResolved) c.reject(new Error('Command timed out'));
      });
    }
  };
  const timer = setInterval(sweep, every);
  timer.unref();
  client.once('end', () => clearInterval(timer));

  const send = client.sendCommand;
  client.sendCommand = function sendWithTimeout(this: Redis, command: Command, stream?: unknown) {
    (command as unknown as TimedCommand).hfSentAt = performance.now();
    return send.call(this, command, stream as never);
  } as Redis['sendCommand'];
}
