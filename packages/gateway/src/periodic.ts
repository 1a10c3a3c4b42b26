import type { Logger } from './log';

/**
 * Runs `job` every `ms`, never two runs at once (a slow run skips the ticks it overlaps), logging
 * failures under `name`. The timer does not keep the process alive.
 */
export function every(ms: number, log: Logger, name: string, job: () => Promise<void>): { stop(): void } {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    job()
      .catch((err) => log.warn({ err: (err as Error).message }, `${name} failed`))
      .finally(() => (running = false));
  }, ms);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
