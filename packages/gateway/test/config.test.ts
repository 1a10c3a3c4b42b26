import { ConfigError, loadConfig } from '../src/config';

describe('loadConfig', () => {
  const strong = { JWT_SECRET: 'a'.repeat(40), JWT_REFRESH_SECRET: 'b'.repeat(40) };

  it('has the documented defaults and is frozen', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      host: '0.0.0.0', port: 8080, redis: null, snapshotTtlSeconds: 604800, presenceTimeoutMs: 120000, handoffTtlMs: 300000,
      maxMessageBytes: 65536, maxStateBytes: 1048576, logLevel: 'info', production: false,
      logMaxBytes: 8 * 1024 * 1024, logLength: 1000, maxSessionsPerUser: 100, maxHandoffsPerSession: 20,
    });
    expect(c.jwt.ephemeral).toBe(true);
    expect(c.jwt.accessTtlSeconds).toBe(900);
    expect(c.jwt.refreshTtlSeconds).toBe(7 * 24 * 3600);
    expect(Object.isFrozen(c)).toBe(true);
    expect(Object.isFrozen(c.jwt)).toBe(true);
  });

  it('reads listen addresses and Redis settings', () => {
    expect(loadConfig({ SERVER_ADDR: '127.0.0.1:9000' })).toMatchObject({ host: '127.0.0.1', port: 9000 });
    expect(loadConfig({ PORT: '7000' })).toMatchObject({ port: 7000 });
    expect(loadConfig({ REDIS_URL: 'redis://h:1/2' }).redis).toEqual({ mode: 'single', url: 'redis://h:1/2' });
    expect(loadConfig({ REDIS_ADDR: 'r:6380', REDIS_PASSWORD: 'p@ss', REDIS_DB: '3' }).redis).toEqual({ mode: 'single', url: 'redis://:p%40ss@r:6380/3' });
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'a:1, b:2' }).redis).toMatchObject({ mode: 'cluster', nodes: [{ host: 'a', port: 1 }, { host: 'b', port: 2 }] });
  });

  it.each([
    ['SERVER_ADDR', { SERVER_ADDR: 'nonsense' }],
    ['PORT', { PORT: '70000' }],
    ['REDIS_URL', { REDIS_URL: 'http://x' }],
    ['REDIS_ADDR', { REDIS_ADDR: 'no-port' }],
    ['REDIS_CLUSTER_NODES', { REDIS_CLUSTER_NODES: 'a:1,b' }],
    ['SNAPSHOT_TTL_SECONDS', { SNAPSHOT_TTL_SECONDS: '-5' }],
    ['PRESENCE_TIMEOUT_MS', { PRESENCE_TIMEOUT_MS: 'soon' }],
    ['MAX_MESSAGE_BYTES', { MAX_MESSAGE_BYTES: '1.5' }],
    ['MAX_STATE_BYTES', { MAX_STATE_BYTES: '0' }],
    ['LOG_LEVEL', { LOG_LEVEL: 'loud' }],
    ['NODE_ID', { NODE_ID: 'has space' }],
    ['JWT_JWKS_URL', { JWT_JWKS_URL: 'not a url' }],
    ['JWT_AUDIENCE', { NODE_ENV: 'production', JWT_SECRET: 'a'.repeat(40), JWT_REFRESH_SECRET: 'b'.repeat(40), JWT_JWKS_URL: 'https://idp.example/jwks' }],
    ['LOG_MAX_BYTES', { LOG_MAX_BYTES: '12' }],
    ['MAX_SESSIONS_PER_USER', { MAX_SESSIONS_PER_USER: 'many' }],
    ['MAX_HANDOFFS_PER_SESSION', { MAX_HANDOFFS_PER_SESSION: '-1' }],
    // The session scripts find a session's id in its keys by the prefix's length and the hash tag.
    ['REDIS_PREFIX', { REDIS_PREFIX: 'hf{x}:' }],
    ['REDIS_PREFIX', { REDIS_PREFIX: 'hf:}' }],
    ['REDIS_PREFIX', { REDIS_PREFIX: 'h f:' }],
  ])('names %s when it is bad', (variable, env) => {
    expect(() => loadConfig(env)).toThrow(ConfigError);
    try {
      loadConfig(env);
    } catch (err) {
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as ConfigError).message.startsWith(`${variable}:`)).toBe(true);
    }
  });

  it('production requires real, distinct secrets', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/JWT_SECRET: is required/);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'harmony-flow-secret-key', JWT_REFRESH_SECRET: 'b'.repeat(40) })).toThrow(/JWT_SECRET: is a published sample/);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'a'.repeat(40), JWT_REFRESH_SECRET: 'harmony-flow-refresh-secret-key' })).toThrow(/JWT_REFRESH_SECRET/);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'short', JWT_REFRESH_SECRET: 'b'.repeat(40) })).toThrow(/at least 32/);
    expect(() => loadConfig({ NODE_ENV: 'production', JWT_SECRET: 'a'.repeat(40), JWT_REFRESH_SECRET: 'a'.repeat(40) })).toThrow(/must differ/);
    const c = loadConfig({ NODE_ENV: 'production', ...strong });
    expect(c.production).toBe(true);
    // An identity provider's tokens need an audience in production; in development it is optional.
    expect(loadConfig({ NODE_ENV: 'production', ...strong, JWT_JWKS_URL: 'https://idp.example/jwks', JWT_AUDIENCE: 'harmonyflow' }).jwt.audience).toBe('harmonyflow');
    expect(loadConfig({ JWT_JWKS_URL: 'https://idp.example/jwks' }).jwt.audience).toBeNull();
    expect(c.jwt.ephemeral).toBe(false);
  });
});
