
/**
 * A small typed event emitter (browsers have no `events` module). A listener that throws does not
 * disturb the emitter or the other listeners: the error is rethrown on a fresh task, where the
 * host reports it like any uncaught error.
 */
export class Emitter<E extends { [K in keyof E]: (...args: never[]) => void }> {
  private readonly listeners: { [K in keyof E]?: Array<E[K]> } = {};

  /** Calls `fn` on every `event` until {@link off}. */
  on<K extends keyof E>(event: K, fn: E[K]): this {
    (this.listeners[event] ??= []).push(fn);
    return this;
  }

  /** Calls `fn` on the next `event` only. */
  once<K extends keyof E>(event: K, fn: E[K]): this {
    const wrapper = ((...args: Parameters<E[K]>) => {
      this.off(event, wrapper);
      (fn as (...a: Parameters<E[K]>) => void)(...args);
    }) as E[K];
    (wrapper as { original?: E[K] }).original = fn;
    return this.on(event, wrapper);
  }

  /** Removes `fn` (registered with {@link on} or {@link once}); without `fn`, every listener of `event`. */
  off<K extends keyof E>(event: K, fn?: E[K]): this {
    const list = this.listeners[event];
    if (!list) return this;
    if (!fn) {
      delete this.listeners[event];
      return this;
    }
    const i = list.findIndex((l) => l === fn || (l as { original?: E[K] }).original === fn);
    if (i >= 0) list.splice(i, 1);
    return this;
  }

  protected emit<K extends keyof E>(event: K, ...args: Parameters<E[K]>): void {
    const list = this.listeners[event];
    if (!list) return;
    // A copy: once-listeners remove themselves while we iterate.
    for (const fn of [...list]) {
      try {
        (fn as (...a: Parameters<E[K]>) => void)(...args);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}
