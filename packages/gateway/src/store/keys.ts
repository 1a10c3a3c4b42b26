/**
 * Every Redis key and channel name comes from here. A session's keys and its channel share the
 * `{sessionId}` hash tag, so on Redis Cluster they sit in one slot: the mutation script may touch
 * them all and publish on the channel with SPUBLISH.
 */
export interface SessionKeys {
  readonly meta: string;
  readonly state: string;
  readonly keyVersions: string;
  readonly log: string;
  readonly devices: string;
  readonly channel: string;
}

export class KeySpace {
  constructor(readonly prefix: string) {}

  session(sessionId: string): SessionKeys {
    const p = `${this.prefix}{${sessionId}}:`;
    return {
      meta: p + 'meta',
      state: p + 'state',
      keyVersions: p + 'kv',
      log: p + 'log',
      devices: p + 'devices',
      channel: p + 'ch',
    };
  }


  idempotency(sessionId: string, deviceId: string, correlationId: string): string {
    return `${this.prefix}{${sessionId}}:idem:${deviceId}:${correlationId}`;
  }

  handoff(sessionId: string, token: string): string {
    return `${this.prefix}{${sessionId}}:handoff:${token}`;
  }

  userSessions(userId: string): string {
    return `${this.prefix}user:{${userId}}:sessions`;
  }

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

  /** Channel for frames every node wants (admin broadcasts, kicks by device). */
  globalChannel(): string {
    return `${this.prefix}global`;
  }

  nodes(): string {
    return `${this.prefix}nodes`;
  }

  node(nodeId: string): string {
    return `${this.prefix}node:{${nodeId}}`;
  }
}
