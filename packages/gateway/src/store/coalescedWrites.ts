import type Redis from 'ioredis';
import type { Cluster } from 'ioredis';
import type { Writable } from 'node:stream';

/**
 * Makes the commands a client sends in one tick leave as one socket write. ioredis writes every
 * command to the socket as it is issued: one syscall each. Commands are issued in bursts (the
 * continuations of every reply in a read resume in one microtask run: a burst of AUTHs moving on to
 * their next step, a version check reading hundreds of headers), so the socket is corked at the
 * first command of a tick and uncorked on the next tick, and Node hands the lot to one writev.
 * Order on the connection, and with it every "a read after a write sees it" guarantee, is
 * untouched: cork only delays the bytes, in order.
 */
export function coalesceWrites(client: Redis | Cluster): void {
  if ((client as Cluster).isCluster) {
    // Every shard connection is its own client with its own socket.
    (client as Cluster).on('+node', (node: Redis) => coalesceNode(node));
    return;
  }
  coalesceNode(client as Redis);
}

function coalesceNode(client: Redis): void {
  const send = client.sendCommand;
  let corked: Writable | null = null;
  const uncork = (): void => {
    const s = corked;
    corked = null;
    s?.uncork();
  };
  client.sendCommand = function sendCoalesced(this: Redis, ...args: Parameters<Redis['sendCommand']>) {
    const stream = (this as unknown as { stream?: Writable }).stream;
    if (corked === null && stream && this.status === 'ready') {
      stream.cork();
      corked = stream;
      process.nextTick(uncork);
    }
    return send.apply(this, args);
  } as Redis['sendCommand'];
}
