import type { Cluster, Command } from 'ioredis';
import type Redis from 'ioredis';

/** What this needs of a command (ioredis marks it resolved when it settles). */
interface PendingCommand {
  readonly isResolved: boolean;
  reject(err: Error): void;
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
 * delete on every write; commands are instead noted in send order with a coarse clock, and a sweep
 * every `ms / 20` fails those unanswered after `ms` (after between `ms` and `ms * 1.1`: the clock
 * is read once per sweep, so a command may have been sent up to one sweep after its noted time). Replies
 * come back in send order on a connection, so the sweep stops at the first command not yet due.
 * The caller must not also give ioredis a `commandTimeout`.
 */
export function timeoutAfterPoll(client: Redis | Cluster, ms: number): void {
  if ((client as Cluster).isCluster) {
    // Every shard connection is its own client with its own socket.
    (client as Cluster).on('+node', (node: Redis) => armNode(node, ms));
    return;
  }
  armNode(client as Redis, ms);
}

function armNode(client: Redis, ms: number): void {
  const every = Math.max(10, Math.floor(ms / 20));
  // Commands in send order with the coarse time they were sent; entries before `head` are done.
  const commands: PendingCommand[] = [];
  const sentAt: number[] = [];
  let head = 0;
  let now = Date.now();

  const sweep = (): void => {
    now = Date.now();
    const due: PendingCommand[] = [];
    while (head < commands.length) {
      const c = commands[head];
      if (!c.isResolved) {
        if (now - sentAt[head] < ms + every) break;
        due.push(c);
      }
      head++;
    }
    if (head > 1024 && head * 2 > commands.length) {
      commands.splice(0, head);
      sentAt.splice(0, head);
      head = 0;
    }
    if (due.length > 0) {
      setImmediate(() => {
        for (const c of due) if (!c.isResolved) c.reject(new Error('Command timed out'));
      });
    }
  };
  const timer = setInterval(sweep, every);
  timer.unref();
  client.once('end', () => clearInterval(timer));

  const send = client.sendCommand;
  client.sendCommand = function sendWithTimeout(this: Redis, command: Command, stream?: unknown) {
    const c = command as unknown as PendingCommand;
    if (!c.isResolved) {
      commands.push(c);
      sentAt.push(now);
    }
    return send.call(this, command, stream as never);
  } as Redis['sendCommand'];
}
