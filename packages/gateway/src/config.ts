import { readFileSync } from 'node:fs';
import os from 'node:os';

/** Every knob of a gateway node. Built once by `loadConfig`, validated and frozen. */
export interface Config {
  readonly host: string;
  readonly port: number;
  /** Redis connection; `null` runs the embedded single-node in-process store. */
  readonly redis: RedisConfig | null;
  readonly redisPrefix: string;
  readonly jwt: JwtConfig;
  readonly snapshotTtlSeconds: number;
  readonly presenceTimeoutMs: number;
  readonly handoffTtlMs: number;
  readonly nodeId: string;
  readonly maxMessageBytes: number;
  readonly maxStateBytes: number;
  readonly logLevel: string;
  readonly production: boolean;
  readonly metricsToken: string | null;
  readonly authTimeoutMs: number;
  readonly tokenGraceMs: number;
  readonly heartbeatIntervalMs: number;
  readonly rateLimit: { readonly perSecond: number; readonly burst: number };
  readonly drainTimeoutMs: number;
  /** How often quiet sessions' stored versions are compared with what local sockets have. */
  readonly consistencyCheckMs: number;
  /** Update log bytes kept per session (resume falls back to a snapshot past it). */
  readonly logMaxBytes: number;
  /** Update log entries kept per session. */
  readonly logLength: number;
  /** Live sessions one user may own (0 = unlimited). */
  readonly maxSessionsPerUser: number;
  /** Live handoff tokens per session (0 = unlimited). */
  readonly maxHandoffsPerSession: number;
  /**
   * How far behind the store may fall before this node refuses new state changes (503 /
   * store_unavailable, not applied) instead of queueing them; 0 = never refuse.
   */
  readonly storeBacklogLimitMs: number;
}

/**
 * How long a Redis command may wait for its answer before it fails as store_unavailable. A write
 * that fails so may still be applied later (it was sent): STORE_BACKLOG_LIMIT_MS keeps new writes
 * from queueing that long.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 3000;

/**
 * Redis connection. `single.url` carries everything (password from REDIS_PASSWORD included);
 * `tls` is present when TLS is on (`rediss://`, or REDIS_TLS=1), `ca` from REDIS_TLS_CA_FILE.
 */
export type RedisConfig =
  | { readonly mode: 'single'; readonly url: string; readonly tls?: RedisTls }
  | { readonly mode: 'cluster'; readonly nodes: ReadonlyArray<{ host: string; port: number }>; readonly password?: string; readonly tls?: RedisTls };

export interface RedisTls {
  /** PEM bundle to verify the server certificate with, instead of the system CAs. */
  readonly ca?: string;
}

export interface JwtConfig {
  readonly secret: Uint8Array;
  readonly refreshSecret: Uint8Array;
  /** True when the secrets were generated for this process (dev mode). */
  readonly ephemeral: boolean;
  readonly jwksUrl: string | null;
  readonly issuer: string | null;
  readonly audience: string | null;
  readonly accessTtlSeconds: number;
  readonly refreshTtlSeconds: number;
}

/** Thrown for bad configuration; `main` prints the one line and exits 1. */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
  constructor(readonly variable: string, message: string) {
    super(`${variable}: ${message}`);
  }
}

/** The seed's sample secrets: published in the README, so never acceptable in production. */
const SAMPLE_SECRETS = new Set(['harmony-flow-secret-key', 'harmony-flow-refresh-secret-key', 'my-secret', 'secret', 'changeme']);

type Env = Record<string, string | undefined>;

function positiveInt(env: Env, name: string, fallback: number, min = 1): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw.trim());
  if (!Number.isSafeInteger(n) || n < min) throw new ConfigError(name, `must be at least ${min}, got "${raw}"`);
  return n;
}

function parseListen(env: Env): { host: string; port: number } {
  if (env.PORT !== undefined && env.PORT !== '') {
    const port = Number(env.PORT);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new ConfigError('PORT', `must be a port number 0-65535, got "${env.PORT}"`);
    return { host: env.HOST || '0.0.0.0', port };
  }
  const addr = env.SERVER_ADDR ?? ':8080';
  const m = /^(\[[^\]]+\]|[^:]*):(\d{1,5})$/.exec(addr.trim());
  if (!m) throw new ConfigError('SERVER_ADDR', `must look like ":8080" or "127.0.0.1:8080", got "${addr}"`);
  const port = Number(m[2]);
  if (port > 65535) throw new ConfigError('SERVER_ADDR', `port out of range in "${addr}"`);
  const host = m[1] === '' ? '0.0.0.0' : m[1].replace(/^\[|\]$/g, '');
  return { host, port };
}

/** REDIS_TLS: 1/true/yes or 0/false/no; undefined when unset. */
function parseTlsFlag(env: Env): boolean | undefined {
  const raw = (env.REDIS_TLS ?? '').trim().toLowerCase();
  if (raw === '') return undefined;
  if (['1', 'true', 'yes'].includes(raw)) return true;
  if (['0', 'false', 'no'].includes(raw)) return false;
  throw new ConfigError('REDIS_TLS', `must be 1 or 0 (true/false, yes/no), got "${env.REDIS_TLS}"`);
}

function redisTls(env: Env, on: boolean): RedisTls | undefined {
  const file = env.REDIS_TLS_CA_FILE;
  if (!on) {
    if (file) throw new ConfigError('REDIS_TLS_CA_FILE', 'is set but TLS to Redis is off: use a rediss:// URL or REDIS_TLS=1');
    return undefined;
  }
  if (!file) return Object.freeze({});
  let ca: string;
  try {
    ca = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError('REDIS_TLS_CA_FILE', `cannot read "${file}": ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError('REDIS_TLS_CA_FILE', `"${file}" holds no PEM certificate`);
  return Object.freeze({ ca });
}

/**
 * REDIS_CLUSTER_NODES, else REDIS_URL, else REDIS_ADDR (+ REDIS_DB). REDIS_PASSWORD applies to
 * each: it fills in a REDIS_URL without a password, and one that carries a different password is
 * refused rather than silently preferring either.
 */
function parseRedis(env: Env): RedisConfig | null {
  const tlsFlag = parseTlsFlag(env);
  const password = env.REDIS_PASSWORD || undefined;
  if (env.REDIS_CLUSTER_NODES) {
    const nodes = env.REDIS_CLUSTER_NODES.split(',').map((s) => s.trim()).filter(Boolean).map((hp) => {
      const m = /^([^:]+):(\d{1,5})$/.exec(hp);
      if (!m) throw new ConfigError('REDIS_CLUSTER_NODES', `entries must be host:port, got "${hp}"`);
      return { host: m[1], port: Number(m[2]) };
    });
    if (nodes.length === 0) throw new ConfigError('REDIS_CLUSTER_NODES', 'needs at least one host:port');
    return Object.freeze({ mode: 'cluster', nodes: Object.freeze(nodes), password, tls: redisTls(env, tlsFlag === true) });
  }
  if (env.REDIS_URL) {
    let u: URL;
    try {
      u = new URL(env.REDIS_URL);
    } catch {
      throw new ConfigError('REDIS_URL', 'must be a redis:// or rediss:// URL (it does not parse as a URL)');
    }
    if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new ConfigError('REDIS_URL', `must be a redis:// or rediss:// URL, got scheme "${u.protocol}"`);
    const tls = u.protocol === 'rediss:';
    if (tlsFlag !== undefined && tlsFlag !== tls) {
      throw new ConfigError('REDIS_TLS', `is ${tlsFlag ? 'on' : 'off'} but REDIS_URL is ${u.protocol}//; make them agree (rediss:// is TLS)`);
    }
    if (password) {
      const inUrl = u.password ? decodeURIComponent(u.password) : '';
      if (inUrl && inUrl !== password) throw new ConfigError('REDIS_PASSWORD', 'differs from the password inside REDIS_URL; set it in one place only');
      if (!inUrl) u.password = encodeURIComponent(password);
    }
    return Object.freeze({ mode: 'single', url: u.toString(), tls: redisTls(env, tls) });
  }
  if (env.REDIS_ADDR) {
    const m = /^([^:]+):(\d{1,5})$/.exec(env.REDIS_ADDR.trim());
    if (!m) throw new ConfigError('REDIS_ADDR', `must be host:port, got "${env.REDIS_ADDR}"`);
    const db = env.REDIS_DB ? positiveInt(env, 'REDIS_DB', 0, 0) : 0;
    const auth = password ? `:${encodeURIComponent(password)}@` : '';
    const tls = tlsFlag === true;
    return Object.freeze({ mode: 'single', url: `${tls ? 'rediss' : 'redis'}://${auth}${m[1]}:${m[2]}/${db}`, tls: redisTls(env, tls) });
  }
  return null;
}

function secret(env: Env, name: string, production: boolean): Uint8Array | null {
  const raw = env[name];
  if (raw === undefined || raw === '') {
    if (production) throw new ConfigError(name, 'is required when NODE_ENV=production');
    return null;
  }
  if (production && SAMPLE_SECRETS.has(raw)) throw new ConfigError(name, 'is a published sample value; set a real secret');
  if (production && raw.length < 32) throw new ConfigError(name, 'must be at least 32 characters in production');
  return new TextEncoder().encode(raw);
}

function randomSecret(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(32));
}

const LOG_LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** Reads the environment into a frozen Config, or throws one ConfigError naming the variable. */
export function loadConfig(env: Env = process.env): Config {
  const production = env.NODE_ENV === 'production';
  const { host, port } = parseListen(env);
  const s = secret(env, 'JWT_SECRET', production);
  const rs = secret(env, 'JWT_REFRESH_SECRET', production);
  if (production && s && rs && Buffer.from(s).equals(Buffer.from(rs))) {
    throw new ConfigError('JWT_REFRESH_SECRET', 'must differ from JWT_SECRET');
  }
  const logLevel = (env.LOG_LEVEL || 'info').toLowerCase();
  if (!LOG_LEVELS.has(logLevel)) throw new ConfigError('LOG_LEVEL', `must be one of ${[...LOG_LEVELS].join(', ')}`);
  const maxMessageBytes = positiveInt(env, 'MAX_MESSAGE_BYTES', 64 * 1024, 256);
  const maxStateBytes = positiveInt(env, 'MAX_STATE_BYTES', 1024 * 1024, 256);
  const jwksUrl = env.JWT_JWKS_URL || null;
  if (jwksUrl) {
    try { new URL(jwksUrl); } catch { throw new ConfigError('JWT_JWKS_URL', `must be a URL, got "${jwksUrl}"`); }
    // Without an audience, any token the identity provider signs (ID tokens, other apps') would pass.
    if (production && !env.JWT_AUDIENCE) throw new ConfigError('JWT_AUDIENCE', 'is required with JWT_JWKS_URL when NODE_ENV=production');
  }
  const prefix = env.REDIS_PREFIX ?? 'hf:';
  if (/[{}\s]/.test(prefix)) throw new ConfigError('REDIS_PREFIX', 'must not contain braces or spaces');
  const nodeId = env.NODE_ID || `${os.hostname()}-${process.pid}`;
  const storeBacklogLimitMs = positiveInt(env, 'STORE_BACKLOG_LIMIT_MS', 1000, 0);
  if (storeBacklogLimitMs >= REDIS_COMMAND_TIMEOUT_MS) {
    throw new ConfigError('STORE_BACKLOG_LIMIT_MS', `must be below the Redis command timeout (${REDIS_COMMAND_TIMEOUT_MS} ms), or 0 to never refuse`);
  }
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(nodeId)) throw new ConfigError('NODE_ID', 'use letters, digits, ".", "_", ":" or "-" (at most 128)');

  return Object.freeze({
    host,
    port,
    redis: parseRedis(env),
    redisPrefix: prefix,
    jwt: Object.freeze({
      secret: s ?? randomSecret(),
      refreshSecret: rs ?? randomSecret(),
      ephemeral: !s || !rs,
      jwksUrl,
      issuer: env.JWT_ISSUER || null,
      audience: env.JWT_AUDIENCE || null,
      accessTtlSeconds: positiveInt(env, 'JWT_ACCESS_TTL_SECONDS', 15 * 60),
      refreshTtlSeconds: positiveInt(env, 'JWT_REFRESH_TTL_SECONDS', 7 * 24 * 3600),
    }),
    snapshotTtlSeconds: positiveInt(env, 'SNAPSHOT_TTL_SECONDS', 604800),
    presenceTimeoutMs: positiveInt(env, 'PRESENCE_TIMEOUT_MS', 120000, 100),
    handoffTtlMs: positiveInt(env, 'HANDOFF_TTL_MS', 300000, 100),
    nodeId,
    maxMessageBytes,
    maxStateBytes,
    logLevel,
    production,
    metricsToken: env.METRICS_TOKEN || null,
    authTimeoutMs: positiveInt(env, 'AUTH_TIMEOUT_MS', 10000, 10),
    tokenGraceMs: positiveInt(env, 'TOKEN_GRACE_MS', 30000, 10),
    heartbeatIntervalMs: positiveInt(env, 'HEARTBEAT_INTERVAL_MS', 25000, 100),
    rateLimit: Object.freeze({
      perSecond: positiveInt(env, 'WS_RATE_PER_SECOND', 100),
      burst: positiveInt(env, 'WS_RATE_BURST', 200),
    }),
    drainTimeoutMs: positiveInt(env, 'DRAIN_TIMEOUT_MS', 5000, 0),
    consistencyCheckMs: positiveInt(env, 'CONSISTENCY_CHECK_MS', 5000, 100),
    logMaxBytes: positiveInt(env, 'LOG_MAX_BYTES', 8 * 1024 * 1024, 1024),
    logLength: positiveInt(env, 'LOG_MAX_ENTRIES', 1000, 10),
    maxSessionsPerUser: positiveInt(env, 'MAX_SESSIONS_PER_USER', 100, 0),
    maxHandoffsPerSession: positiveInt(env, 'MAX_HANDOFFS_PER_SESSION', 20, 0),
    storeBacklogLimitMs,
  });
}
