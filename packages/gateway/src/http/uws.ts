import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { ErrorCode } from '@harmonyflow/protocol';
import { AppError, tooLarge } from '../errors';
import type { Principal, TokenService } from '../auth/tokens';
import type { Logger } from '../log';
import type { Metrics } from '../metrics';

/** What a handler sees: everything copied out of uWS's request before the first await. */
export interface RequestContext {
  readonly method: string;
  readonly path: string;
  readonly query: URLSearchParams;
  readonly params: readonly string[];
  readonly headers: Readonly<Record<string, string>>;
  body: Buffer | null;
  principal: Principal | null;
}

export interface Reply {
  status: number;
  /** Objects are sent as JSON; strings as-is with `contentType`. */
  body?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

export type Handler = (ctx: RequestContext) => Promise<Reply> | Reply;

export interface RouteOptions {
  /** Metric label (bounded): the route pattern. */
  readonly name: string;
  readonly auth: 'none' | 'user' | 'admin';
  /** Read the request body, capped at `bodyLimit` bytes (413 past it). */
  readonly body?: boolean;
  /** Headers to copy besides authorization. */
  readonly headers?: readonly string[];
}

export interface HttpDeps {
  readonly tokens: TokenService;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly bodyLimit: number;
  /** Counts requests in flight so shutdown can wait for them. */
  readonly inflight: { count: number };
}

const STATUS_TEXT: Record<number, string> = {
  200: 'OK', 201: 'Created', 202: 'Accepted', 204: 'No Content', 304: 'Not Modified', 400: 'Bad Request',
  401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 409: 'Conflict',
  410: 'Gone', 413: 'Payload Too Large', 429: 'Too Many Requests', 500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export function statusLine(status: number): string {
  return `${status} ${STATUS_TEXT[status] ?? 'Unknown'}`;
}

type Method = 'get' | 'post' | 'del' | 'put';

/** Every (method, pattern) registered through `route()`, per app: what the API reference is checked against. */
export const registeredRoutes = new WeakMap<TemplatedApp, Array<{ readonly method: string; readonly pattern: string }>>();

/**
 * Registers an HTTP route with the uWS habits in one place: copy from `req` synchronously,
 * `onAborted` before any await, streaming body with a cap, auth, error mapping, `cork` around the
 * write, and a duration metric.
 */
export function route(app: TemplatedApp, deps: HttpDeps, method: Method, pattern: string, opts: RouteOptions, handler: Handler): void {
  const paramCount = (pattern.match(/\/:/g) ?? []).length;
  const methodName = method === 'del' ? 'DELETE' : method.toUpperCase();
  if (!registeredRoutes.has(app)) registeredRoutes.set(app, []);
  registeredRoutes.get(app)!.push({ method: methodName, pattern });
  app[method](pattern, (res: HttpResponse, req: HttpRequest) => {
    const started = process.hrtime.bigint();
    const headers: Record<string, string> = { authorization: req.getHeader('authorization') };
    if (opts.headers) for (const h of opts.headers) headers[h] = req.getHeader(h);
    const params: string[] = [];
    for (let i = 0; i < paramCount; i++) params.push(decodeURIComponentSafe(req.getParameter(i) ?? ''));
    const ctx: RequestContext = {
      method: methodName,
      path: req.getUrl(),
      query: new URLSearchParams(req.getQuery() ?? ''),
      params,
      headers,
      body: null,
      principal: null,
    };
    // uWS honours `Connection: close` on end() but not on endWithoutBody() (204/304): do it ourselves.
    const state: RequestState = {
      aborted: false, closeAfter: req.getHeader('connection').toLowerCase() === 'close', abortBody: () => {}, bodyDone: false, bodyIgnored: false,
    };
    res.onAborted(() => {
      state.aborted = true;
      state.abortBody(); // a body still being read would otherwise wait forever
    });
    const body = opts.body ? readBody(res, req.getHeader('content-length'), deps.bodyLimit, state) : null;
    // The body may fail (too large, aborted) while credentials are still being checked: its
    // rejection is awaited later, and must not count as unhandled meanwhile (that ends the process).
    body?.catch(() => undefined);
    deps.inflight.count++;
    void run(res, ctx, body, state, deps, opts, handler).finally(() => {
      deps.inflight.count--;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      deps.metrics.httpDuration.observe({ route: opts.name, method: methodName, status: String(res_status.get(res) ?? 0) }, seconds);
    });
  });
}

// uWS response objects cannot carry our fields safely, so the final status is kept aside for metrics.
const res_status = new WeakMap<HttpResponse, number>();

async function run(
  res: HttpResponse, ctx: RequestContext, body: Promise<Buffer> | null, state: RequestState,
  deps: HttpDeps, opts: RouteOptions, handler: Handler,
): Promise<void> {
  let reply: Reply;
  try {
    if (opts.auth !== 'none') {
      try {
        ctx.principal = await authenticate(deps.tokens, ctx.headers.authorization);
        if (opts.auth === 'admin' && ctx.principal.role !== 'admin') {
          throw new AppError(ErrorCode.FORBIDDEN, 403, 'admin role required');
        }
      } catch (err) {
        // Answered before the body is read (SPEC §9): the rest of an unread body is dropped with
        // the connection rather than buffered for a request that is refused anyway.
        if (body) {
          state.bodyIgnored = true;
          if (!state.bodyDone) state.closeAfter = true;
        }
        throw err;
      }
    }
    if (body) ctx.body = await body;
    reply = await handler(ctx);
  } catch (err) {
    reply = errorReply(err, deps.log, ctx);
    if (reply.status === 413) state.closeAfter = true;
  }
  res_status.set(res, reply.status);
  if (state.aborted) return;
  res.cork(() => writeReply(res, reply, state.closeAfter));
}

export function writeReply(res: HttpResponse, reply: Reply, closeConnection = false): void {
  res.writeStatus(statusLine(reply.status));
  if (reply.headers) for (const k in reply.headers) res.writeHeader(k, reply.headers[k]);
  if (reply.body === undefined || reply.status === 204 || reply.status === 304) {
    res.endWithoutBody(0, closeConnection);
    return;
  }
  if (typeof reply.body === 'string' || reply.body instanceof Uint8Array) {
    res.writeHeader('content-type', reply.contentType ?? 'text/plain; charset=utf-8');
    res.end(reply.body, closeConnection);
    return;
  }
  res.writeHeader('content-type', 'application/json');
  res.end(JSON.stringify(reply.body), closeConnection);
}

async function authenticate(tokens: TokenService, authorization: string): Promise<Principal> {
  const m = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!m) throw new AppError(ErrorCode.UNAUTHORIZED, 401, 'missing bearer token');
  try {
    return await tokens.verifyAccess(m[1]);
  } catch (err) {
    if (err instanceof AppError) throw new AppError(ErrorCode.UNAUTHORIZED, 401, err.message, { reason: err.code });
    throw err;
  }
}

/** Maps any thrown value to the SPEC error body; unknown errors are logged and become 500 `internal`. */
export function errorReply(err: unknown, log: Logger, ctx?: RequestContext): Reply {
  if (err instanceof AppError) {
    const reply: Reply = { status: err.status, body: { error: err.code, message: err.message, ...err.extra } };
    // The store is away or behind: a second is the shortest wait worth a retry (RFC 9110).
    if (err.status === 503) reply.headers = { 'retry-after': '1' };
    return reply;
  }
  log.error({ err, path: ctx?.path }, 'unhandled error in HTTP handler');
  return { status: 500, body: { error: ErrorCode.INTERNAL, message: 'internal error' } };
}

interface RequestState {
  aborted: boolean;
  closeAfter: boolean;
  abortBody: () => void;
  /** The whole body has arrived. */
  bodyDone: boolean;
  /** The request was refused before its body mattered: stop buffering it. */
  bodyIgnored: boolean;
}

function readBody(res: HttpResponse, contentLength: string, limit: number, state: RequestState): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    state.abortBody = () => reject(new AppError('aborted', 400, 'client aborted the request'));
    const declared = contentLength ? Number(contentLength) : NaN;
    let failed = Number.isFinite(declared) && declared > limit;
    if (failed) {
      // Answer at once; the connection is closed after the reply so the unread body is dropped.
      reject(tooLarge(`request body exceeds ${limit} bytes`));
    }
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      if (isLast) state.bodyDone = true;
      if (failed || state.aborted || state.bodyIgnored) return;
      size += chunk.byteLength;
      if (size > limit) {
        failed = true;
        reject(tooLarge(`request body exceeds ${limit} bytes`));
        return;
      }
      // The ArrayBuffer is only valid during this callback: copy it.
      chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (isLast) resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    });
  });
}

function decodeURIComponentSafe(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
