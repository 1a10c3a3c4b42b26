import { SessionError, ClientErrorCode } from './errors';

/** The `fetch` the HTTP helpers use (global in browsers and Node ≥ 18). */
export type FetchLike = (input: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<{
  ok: boolean;
  status: number;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}>;

/**
 * The HTTP base URL that goes with a WebSocket URL: `ws://h:p/ws` → `http://h:p`,
 * `wss://h/api/ws` → `https://h/api` (the `/ws` endpoint's parent), query and fragment dropped.
 */
export function httpBaseFromWsUrl(wsUrl: string): string {
  const u = new URL(wsUrl);
  const scheme = u.protocol === 'wss:' ? 'https:' : u.protocol === 'ws:' ? 'http:' : u.protocol;
  const path = u.pathname.replace(/\/ws\/?$/, '').replace(/\/+$/, '');
  return `${scheme}//${u.host}${path}`;
}

/**
 * Sends one JSON request with a bearer token and returns the parsed body. A non-2xx answer
 * throws {@link SessionError} with the server's `error` code (SPEC §4: `not_found`,
 * `handoff_token_used`, `quota_exceeded`, …) and `details.status`.
 */
export async function requestJson<T>(fetchImpl: FetchLike, base: string, method: string, path: string, token: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetchImpl(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let parsed: unknown = undefined;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = text;
    }
  }
  if (res.ok) return parsed as T;
  const err = (parsed && typeof parsed === 'object' ? parsed : {}) as { error?: unknown; message?: unknown };
  throw new SessionError(
    typeof err.error === 'string' ? err.error : ClientErrorCode.HTTP_ERROR,
    typeof err.message === 'string' ? err.message : `${method} ${path} answered ${res.status}`,
    { ...(err as Record<string, unknown>), status: res.status },
  );
}
