export interface ApiResponse<T = any> {
  status: number;
  headers: Headers;
  body: T;
}

/** Tiny fetch wrapper for tests: JSON in, JSON (or text) out, never throws on status. */
export async function api<T = any>(
  base: string,
  method: string,
  path: string,
  opts: { token?: string; body?: unknown; raw?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<ApiResponse<T>> {
  // No keep-alive: a pooled connection would keep a stopped uWS node's loop (and jest) alive.
  const headers: Record<string, string> = { connection: 'close', ...opts.headers };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  let body: string | Buffer | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(base + path, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text) parsed = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: parsed as T };
}
