import type { Logger } from './log';
import { every, type Periodic } from './periodic';
import type { SessionStore } from './store/types';

/**
 * Sessions with a connected device never expire (SPEC §9): every `everyMs` this node asks the
 * store to refresh the expiry of each session it hosts, in batches. The store refreshes only when
 * due (at most once per eighth of the TTL), so this is mostly reads, and never a write per
 * heartbeat.
 */
export class SessionKeepAlive {
  private ticker: Periodic | null = null;

  constructor(
    private readonly store: SessionStore,
    private readonly sessionIds: () => string[],
    private readonly log: Logger,
    private readonly batch = 500,
  ) {}

  /** A period that keeps even a short TTL alive: well inside an eighth of it, at most 2 minutes. */
  static periodFor(ttlSeconds: number): number {
    return Math.max(250, Math.min(120_000, Math.floor((ttlSeconds * 1000) / 10)));
  }

  start(everyMs: number): void {
    this.ticker = every(everyMs, this.log, 'session keep-alive', async () => {
      const ids = this.sessionIds();
      for (let i = 0; i < ids.length; i += this.batch) await this.store.keepAlive(ids.slice(i, i + this.batch));
    });
  }

  async stop(): Promise<void> {
    const t = this.ticker;
    this.ticker = null;
    await t?.stop();
  }
}
