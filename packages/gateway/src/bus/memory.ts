import type { Bus } from './types';

/**
 * In-process broker shared by the in-process nodes of one test or by the single embedded node.
 * Delivery is asynchronous (microtask) but keeps publish order.
 */
export class MemoryBroker {
  private readonly buses = new Set<MemoryBus>();

  attach(bus: MemoryBus): void {
    this.buses.add(bus);
  }

  detach(bus: MemoryBus): void {
    this.buses.delete(bus);
  }

  deliver(sessionId: string | null, data: Uint8Array): void {
    for (const bus of this.buses) bus.receive(sessionId, data);
  }
}

export class MemoryBus implements Bus {
  private handler: (data: Uint8Array) => void = () => {};
  private readonly sessions = new Set<string>();
  private readonly queue: Uint8Array[] = [];
  private scheduled = false;

  constructor(private readonly broker: MemoryBroker) {
    broker.attach(this);
  }

  onFrame(handler: (data: Uint8Array) => void): void {
    this.handler = handler;
  }

  onResubscribed(): void {}

  async subscribe(sessionIds: readonly string[]): Promise<void> {
    for (const id of sessionIds) this.sessions.add(id);
  }

  async unsubscribe(sessionIds: readonly string[]): Promise<void> {
    for (const id of sessionIds) this.sessions.delete(id);
  }

  async publish(sessionId: string, data: Uint8Array): Promise<void> {
    this.broker.deliver(sessionId, data);
  }

  /** Synchronous publish for the memory store, which must publish inside its atomic step. */
  publishNow(sessionId: string, data: Uint8Array): void {
    this.broker.deliver(sessionId, data);
  }

  async publishGlobal(data: Uint8Array): Promise<void> {
    this.broker.deliver(null, data);
  }

  receive(sessionId: string | null, data: Uint8Array): void {
    if (sessionId !== null && !this.sessions.has(sessionId)) return;
    this.queue.push(data);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.scheduled = false;
    const frames = this.queue.splice(0);
    for (const f of frames) this.handler(f);
  }

  async close(): Promise<void> {
    this.broker.detach(this);
    this.sessions.clear();
  }
}
