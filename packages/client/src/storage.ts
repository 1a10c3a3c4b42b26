/**
 * Where the client keeps writes that the server has not acknowledged yet: the Web Storage shape
 * (`localStorage` fits as it is). Each method may return a value or a promise of it, so
 * file-, IndexedDB- or AsyncStorage-backed adapters fit too. `setItem` must replace the value
 * atomically: after a crash the old or the new value is there, never a mix.
 */
export interface StorageLike {
  getItem(key: string): string | null | undefined | Promise<string | null | undefined>;
  setItem(key: string, value: string): void | Promise<void>;
  removeItem(key: string): void | Promise<void>;
}

/** The default storage: a Map. Queued writes survive reconnects, not the process. */
export class MemoryStorage implements StorageLike {
  private readonly items = new Map<string, string>();

  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    this.items.set(key, String(value));
  }

  removeItem(key: string): void {
    this.items.delete(key);
  }

  /** The stored keys (for tests and debugging). */
  keys(): string[] {
    return [...this.items.keys()];
  }
}
