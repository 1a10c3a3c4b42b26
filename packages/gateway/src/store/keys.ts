/**
 * Every Redis key and channel name comes from here. A session's keys and its channel share the
 * `{sessionId}` hash tag, so on Redis Cluster they sit in one slot: the mutation script may touch
 * them all and publish on the channel with SPUBLISH. All of a session's keys expire at the same
 * instant (the `exp` field of its meta hash), so a session never half-expires.
 */
export interface SessionKeys {
  /** Hash: the header `h` (owner, version, epoch, sizes, expiry, log bookkeeping), and per device its mutation mark and dedupe records. */
  readonly meta: string;
  /** Hash: state key → "version|size|stored value". */
  readonly state: string;
  /** Hash: deleted key → version of its deletion (bounded; see mutate.lua). */
  readonly tomb: string;
  /** Stream: the update log, entry id = version. */
  readonly log: string;
  /** Hash: device id → presence record. */
  readonly devices: string;
  /** Sorted set: live handoff tokens by expiry. */
  readonly handoffs: string;
  readonly channel: string;
}

export class KeySpace {
  constructor(readonly prefix: string) {}

  session(sessionId: string): SessionKeys {
    const p = `${this.prefix}{${sessionId}}:`;
    return {
      meta: p + 'meta',
      state: p + 'state',
      tomb: p + 'tomb',
      log: p + 'log',
      devices: p + 'devices',
      handoffs: p + 'handoffs',
      channel: p + 'ch',
    };
  }

  /** The session's meta hash alone (what a header read needs, without the other names). */
  meta(sessionId: string): string {
    return `${this.prefix}{${sessionId}}:meta`;
  }

  /** The keys every session script that may refresh the session's expiry receives, in this order. */
  sessionKeyList(sessionId: string): string[] {
    const p = `${this.prefix}{${sessionId}}:`;
    return [p + 'meta', p + 'state', p + 'tomb', p + 'log', p + 'devices'];
  }

  handoff(sessionId: string, token: string): string {
    return `${this.prefix}{${sessionId}}:handoff:${token}`;
  }

  /** Sorted set of a user's sessions, scored by each session's expiry deadline. */
  userSessions(userId: string): string {
    return `${this.prefix}user:{${userId}}:sessions`;
  }

  /** Sorted set of every session, scored by expiry deadline (admin listing and counts). */
  allSessions(): string {
    return `${this.prefix}sessions`;
  }

  refreshUsed(family: string, jti: string): string {
    return `${this.prefix}rt:{${family}}:used:${jti}`;
  }

  refreshRevoked(family: string): string {
    return `${this.prefix}rt:{${family}}:revoked`;
  }

  counters(): string {
    return `${this.prefix}stats`;
  }

  /** Channel for frames every node wants (admin broadcasts). */
  globalChannel(): string {
    return `${this.prefix}global`;
  }

  /** Hash: node instance id → its latest heartbeat (NodeInfo JSON). */
  nodes(): string {
    return `${this.prefix}nodes`;
  }

  /** Set of sessions a node instance hosts (what a reaper walks when it dies). */
  nodeSessions(instanceId: string): string {
    return `${this.prefix}node:{${instanceId}}:sessions`;
  }

  /** Hash of a node instance's connections (admin listing). */
  nodeConns(instanceId: string): string {
    return `${this.prefix}node:{${instanceId}}:conns`;
  }

  /** Marker: a survivor is reaping this instance (and when). */
  nodeReaping(instanceId: string): string {
    return `${this.prefix}node:{${instanceId}}:reaping`;
  }
}
