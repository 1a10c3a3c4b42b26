import type { Cluster, Command } from 'ioredis';
import type Redis from 'ioredis';

/** What this needs of a command: its timer field, which ioredis clears when the command settles (private in its types). */
interface TimedCommand {
  _commandTimeoutTimer?: NodeJS.Timeout;
  readonly isResolved: boolean;
  reject(err: Error): void;
}

/**
 * Command timeouts that do not fail a command whose reply has already arrived.
 *
 * ioredis fails a command from a timer, and timers run at the start of an event-loop turn, before
 * the poll phase reads sockets. After a long stretch of work (a burst of frames read in one turn, a
 * GC pause, a saturated CPU), every command sent before it had its timer expire first and was failed
 * as "timed out" while its reply sat unread in the socket: a write answered `store_unavailable`
 * that had been applied. Here the timer only arms a check that runs after the next poll phase
 * (setImmediate), by which time any reply already received has been read; a command still
 * unanswered then is failed as before. The timer takes the place of ioredis's own (set first, so
 * ioredis keeps it and clears it when the command settles), so no command stays alive longer.
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
  const send = client.sendCommand;
  client.sendCommand = function sendWithTimeout(this: Redis, command: Command, stream?: unknown) {
    const c = command as unknown as TimedCommand;
    if (!c._commandTimeoutTimer && !c.isResolved) {
      c._commandTimeoutTimer = setTimeout(() => setImmediate(() => {
        if (!c.isResolved) c.reject(new Error('Command timed out'));
      }), ms);
    }
    return send.call(this, command, stream as never);
  } as Redis['sendCommand'];
}
