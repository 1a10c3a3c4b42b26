/**
 * Turns a call per item into one call per event-loop turn: every item handed in during one turn
 * (e.g. every connection uWS accepted in it) goes in one batch, and each caller's promise settles
 * with that batch.
 */
export function perTick<T>(run: (items: T[]) => Promise<void>): (item: T) => Promise<void> {
  let items: T[] = [];
  let pending: Promise<void> | null = null;
  return (item) => {
    items.push(item);
    pending ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      const batch = items;
      items = [];
      pending = null;
      return run(batch);
    });
    return pending;
  };
}
