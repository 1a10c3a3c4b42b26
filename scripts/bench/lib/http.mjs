// HTTP helpers for benchmark scenarios: a keep-alive client on node:http (fetch/undici costs more
// per request) that measures each request with process.hrtime.bigint(), and a bounded worker pool.
import http from 'node:http';

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

export class KeepAliveClient {
  /**
   * @param {string} baseUrl  http://127.0.0.1:<port> (loopback only)
   * @param {{ maxSockets: number, timeoutMs?: number }} opts  maxSockets = the concurrency
   */
  constructor(baseUrl, { maxSockets, timeoutMs = 10_000 }) {
    const u = new URL(baseUrl);
    if (u.protocol !== 'http:' || !LOOPBACK.has(u.hostname)) throw new Error(`benchmarks stay on loopback http, not ${baseUrl}`);
    this.host = u.hostname;
    this.port = Number(u.port);
    this.timeoutMs = timeoutMs;
    this.agent = new http.Agent({ keepAlive: true, maxSockets, maxFreeSockets: maxSockets, scheduling: 'fifo' });
  }

  /**
   * One request. Never rejects: transport failures resolve with status 0 and `error`.
   * `ms` is the time from just before http.request() to the end of the response body.
   * @returns {Promise<{ status: number, headers?: object, body?: string, ms: number, error?: string }>}
   */
  request(method, path, headers, body) {
    return new Promise((resolve) => {
      const start = process.hrtime.bigint();
      const elapsed = () => Number(process.hrtime.bigint() - start) / 1e6;
      let settled = false;
      const finish = (r) => {
        if (!settled) {
          settled = true;
          resolve(r);
        }
      };
      const req = http.request({ agent: this.agent, host: this.host, port: this.port, method, path, headers });
      req.setTimeout(this.timeoutMs, () => req.destroy(new Error(`no response within ${this.timeoutMs} ms`)));
      req.on('error', (err) => finish({ status: 0, error: err.message, ms: elapsed() }));
      req.on('response', (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', (err) => finish({ status: 0, error: err.message, ms: elapsed() }));
        res.on('end', () => {
          const ms = elapsed();
          finish({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), ms });
        });
      });
      req.end(body);
    });
  }

  close() {
    this.agent.destroy();
  }
}

/**
 * Runs task(0..count-1) on `concurrency` workers. Bounded by count, by `deadline` (Date.now() ms)
 * and by `signal`: jobs not started by then are reported as `notRun`. A task that throws is counted
 * in `thrown` (tasks should report their own errors).
 * @returns {Promise<{ started: number, notRun: number, thrown: number, wallMs: number }>}
 */
export async function runPool({ count, concurrency, deadline = Infinity, signal, task }) {
  let next = 0;
  let thrown = 0;
  const t0 = process.hrtime.bigint();
  const worker = async () => {
    while (next < count && Date.now() < deadline && !signal?.aborted) {
      const i = next++;
      try {
        await task(i);
      } catch {
        thrown++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, count)) }, worker));
  return { started: next, notRun: count - next, thrown, wallMs: Number(process.hrtime.bigint() - t0) / 1e6 };
}
