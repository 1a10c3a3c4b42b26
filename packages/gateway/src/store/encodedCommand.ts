import { Command } from 'ioredis';

/**
 * A command whose RESP text is built here in one pass, sent through ioredis's `sendCommand` (its
 * documented way to send a Command): the connection, ordering, reply parsing and error handling
 * stay ioredis's. For the batched write path, where ioredis's generic call (`args.shift()`,
 * `args.flat()` element by element in V8's runtime, argument stringification, then a second pass to
 * build the text) cost more per write than the socket write itself.
 *
 * Replies come back as Buffers. Only for a single Redis: with no arguments of its own, the command
 * has no keys for Redis Cluster to route by.
 */
export class EncodedCommand extends Command {
  private readonly text: string;

  /** `name first ...rest`: FCALL and EVALSHA take the function or script first. */
  constructor(name: string, first: string, rest: readonly (string | number)[]) {
    super(name, [], { replyEncoding: null });
    this.text = encodeCommand(name, first, rest);
  }

  override toWritable(): string {
    return this.text;
  }
}

/** RESP array of bulk strings: `*<n>\r\n` then `$<bytes>\r\n<arg>\r\n` per argument. */
export function encodeCommand(name: string, first: string, args: readonly (string | number)[]): string {
  let out = `*${args.length + 2}\r\n$${name.length}\r\n${name}\r\n$${Buffer.byteLength(first)}\r\n${first}\r\n`;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const s = typeof a === 'string' ? a : String(a);
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  }
  return out;
}
