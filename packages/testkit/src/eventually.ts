/** Polls `check` until it stops throwing (or returns truthy), or fails with its last error. */
export async function eventually<T>(check: () => T | Promise<T>, timeoutMs = 5000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastErr: unknown = new Error('condition not met');
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v !== false && v !== undefined && v !== null) return v;
      lastErr = new Error(`condition returned ${String(v)}`);
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw lastErr;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
