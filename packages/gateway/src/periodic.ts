import type { Logger } from './log';

/** A periodic job; `stop()` resolves once a run in progress has finished (no run starts after it). */
export interface Periodic {
  stop(): Promise<void>;
}

/**
 * Runs `job` every `ms`, never two runs at once (a slow run skips the ticks it overlaps), logging
 * failures under `name`. The timer does not keep the process alive.
 */
export function every(ms: number, log: Logger, name: string, job: () => Promise<void>): Periodic {
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = job()
      .catch((err) => log.warn({ err: (err as Error).message }, `${name} failed`))
      .finally(() => (running = null));
  }, ms);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      return running ?? Promise.resolve();
    },
  };
}
