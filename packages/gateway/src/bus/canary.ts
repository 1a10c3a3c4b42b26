import { BusKind, encodeControlFrame, type ControlFrame } from '@harmonyflow/protocol';
import type { Metrics } from '../metrics';
import type { Bus } from './types';

/**
 * A frame to ourselves, every `everyMs`, through the same kind of channel sessions use. A node
 * whose bus silently stopped delivering (subscribed to nothing after a failover, a stuck shard
 * subscriber) turns not-ready (`silent()`). The round trip is hf_bus_canary_rtt_seconds: bus lag
 * (hf_bus_lag_seconds) is commit to arrival of state updates, which a canary is not.
 */
export class BusCanary {
  private readonly channel: string;
  private sentAt = 0;
  private heardAt = Date.now();
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly bus: Bus, private readonly instance: string, private readonly everyMs: number, private readonly metrics: Metrics) {
    this.channel = `canary-${instance}`;
  }

  async start(): Promise<void> {
    await this.bus.subscribe([this.channel]);
    this.timer = setInterval(() => this.send(), this.everyMs);
    this.timer.unref();
  }

  private send(): void {
    const now = Date.now();
    if (this.sentAt <= this.heardAt) this.sentAt = now; // measure silence from the first unanswered send
    this.bus.publish(this.channel, encodeControlFrame({ kind: BusKind.CANARY, sessionId: this.channel, originNode: this.instance, body: { sent_at: now } }))
      .catch(() => undefined); // a failed publish is the store being down, which /ready reports on its own
  }

  heard(f: ControlFrame): void {
    if (f.originNode !== this.instance) return;
    this.heardAt = Date.now();
    const rtt = this.heardAt - Number(f.body.sent_at);
    // prom-client throws on NaN; a clock stepped back reads as 0.
    if (Number.isFinite(rtt)) this.metrics.busCanaryRtt.observe(Math.max(0, rtt) / 1000);
  }

  /** True when our own frames stopped coming back. */
  silent(): boolean {
    return this.sentAt > this.heardAt && Date.now() - this.sentAt > 3 * this.everyMs;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
