import pino from 'pino';

export type Logger = pino.Logger;

/**
 * JSON lines on stdout, written synchronously. The default asynchronous stream flushes its buffer
 * at exit in a loop that retries failed writes forever: with nobody reading stdout any more (a
 * dead log shipper, `| head`), the process would hang at exit instead of stopping. Synchronous
 * writes keep nothing buffered, and a broken pipe just turns logging off. Lines are rare (lifecycle
 * and failures, never per message), so the syscall per line costs nothing that matters.
 */
export function createLogger(level: string, nodeId: string): Logger {
  return pino(
    { level, base: { node_id: nodeId }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 1, sync: true }),
  );
}
