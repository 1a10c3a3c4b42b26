import type { Cluster } from 'ioredis';
import type Redis from 'ioredis';

/**
 * One socket write for the commands a connection is handed in one event-loop turn, instead of one
 * write each. ioredis writes every command to the socket as it is sent: a connect burst made a
 * write system call per claim and per presence call, and on loopback each write also runs the
 * receiving side's TCP work in the sender (the writes were ~30% of the gateway's busy time in a
 * connect burst). Here the first command of a turn corks the socket and an immediate uncorks it,
 * after the poll phase has run every callback of the turn: one writev for all of them (or for each
 * MAX_HELD of them).
 *
 * A command sent from an immediate itself would wait a whole turn for the next check phase: the
 * write path's batch (already one command per turn) is sent from one, so it hands its command over
 * with `flushWrites` at once.
 */
export function coalesceWrites(client: Redis | Cluster): void {
  if ((client as Cluster).isCluster) {
    (client as Cluster).on('+node', (node: Redis) => armNode(node));
    return;
  }
  armNode(client as Redis);
}

/** Writes what the connection holds corked now (see coalesceWrites). */
export function flushWrites(client: Redis): void {
  flushers.get(client)?.();
}

/**
 * Commands held at most before they are written anyway: a burst of thousands (a presence touch of
 * every local session) goes out in pieces that Redis works through while the rest are being made,
 * instead of all at the end of the turn with every command object still alive meanwhile (that
 * grew the heap, and the RSS per connection at 10k, by ~1.5 KiB a connection).
 */
const MAX_HELD = 64;

const flushers = new WeakMap<Redis, () => void>();

interface Corkable {
  cork(): void;
  uncork(): void;
}

function armNode(client: Redis): void {
  let corked: Corkable | null = null;
  let held = 0;
  const uncork = (): void => {
    const s = corked;
    if (s === null) return;
    corked = null;
    s.uncork();
  };
  flushers.set(client, uncork);
  const send = client.sendCommand;
  client.sendCommand = function coalescedSend(this: Redis, command, stream) {
    if (corked === null && this.stream !== undefined) {
      corked = this.stream as unknown as Corkable;
      corked.cork();
      held = 0;
      setImmediate(uncork);
    }
    const reply = send.call(this, command, stream as never);
    if (++held === MAX_HELD) uncork();
    return reply;
  } as Redis['sendCommand'];
}
