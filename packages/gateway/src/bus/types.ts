/**
 * Fan-out between nodes. Guarantees:
 * - Frames of one session arrive in publish order (for state updates: version order, since the
 *   store publishes from inside its atomic mutation).
 * - At-most-once: a frame published while a node is not subscribed, or while the connection to
 *   the broker is down, is lost for that node. The update log (`SessionStore.updatesSince`) is
 *   how clients catch up, so nothing durable depends on the bus.
 * - A node receives its own frames too; callers use the frame's origin to avoid double delivery.
 * - `publish`/`publishGlobal` reject with StoreUnavailableError when the broker is unreachable.
 */
export interface Bus {
  /** One handler per node: the hub. Global frames arrive with sessionId null. */
  onFrame(handler: (data: Uint8Array) => void): void;
  /** Called after the bus (re)subscribed its channels, e.g. once Redis is back. */
  onResubscribed(handler: () => void): void;
  subscribe(sessionIds: readonly string[]): Promise<void>;
  unsubscribe(sessionIds: readonly string[]): Promise<void>;
  publish(sessionId: string, data: Uint8Array): Promise<void>;
  publishGlobal(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}
