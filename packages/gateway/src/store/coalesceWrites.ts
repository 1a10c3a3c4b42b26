import type { Socket } from 'node:net';
import type { Cluster, Command } from 'ioredis';
import type Redis from 'ioredis';
import { holdTimeout, restartTimeout } from './timeoutAfterPoll';

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
 * write path's batch (already one command per turn) is sent from one, so it goes out `uncorked`.
 */
export function coalesceWrites(client: Redis | Cluster): void {
  if ((client as Cluster).isCluster) {
    (client as Cluster).on('+node', (node: Redis) => arm(node));
    return;
  }
  arm(client as Redis);
}

/**
 * Runs `send` with the commands it sends written to the socket at once, after anything the
 * connection held (so in the order they were made).
 */
export function uncorked<T>(client: Redis, send: () => T): T {
  const w = writers.get(client);
  if (w === undefined) return send();
  w.flush();
  w.direct = true;
  try {
    return send();
  } finally {
    w.direct = false;
  }
}

/**
 * Commands held at most before they are written anyway: a burst of thousands (a periodic round
 * with a command per session, as the presence touch was) goes out in pieces that Redis works
 * through while the rest are being made, instead of all at the end of the turn with every command
 * object still alive meanwhile (uncapped, that grew the heap, and the RSS per connection at 10k,
 * by ~1.5 KiB a connection).
 */
const MAX_HELD = 64;

/** The write state of one connection. */
class Writer {
  corked: Socket | null = null;
  /** The commands held since the cork. */
  readonly held: Command[] = [];
  direct = false;
  readonly flush = (): void => {
    const s = this.corked;
    if (s === null) return;
    this.corked = null;
    s.uncork();
    // A command's timeout runs from its write, not from when it was made: one held across a
    // stall of the event loop must not be failed the moment it leaves, before its reply can come.
    const now = performance.now();
    for (const c of this.held) restartTimeout(c, now);
    this.held.length = 0;
  };
}

const writers = new WeakMap<Redis, Writer>();

function arm(client: Redis): void {
  const w = new Writer();
  writers.set(client, w);
  const send = client.sendCommand;
  client.sendCommand = function coalescedSend(this: Redis, command, stream) {
    if (w.direct) return send.call(this, command, stream as never);
    if (w.corked === null && this.stream !== undefined) {
      w.corked = this.stream;
      w.corked.cork();
      setImmediate(w.flush);
    }
    const reply = send.call(this, command, stream as never);
    if (w.corked !== null) {
      holdTimeout(command);
      if (w.held.push(command) === MAX_HELD) w.flush();
    }
    return reply;
  } as Redis['sendCommand'];
}
