import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigError, loadConfig } from '../src/config';

function variableOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).variable;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('loadConfig: Redis connection (REDIS_URL + REDIS_PASSWORD, TLS)', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'hf-config-'));
  const caFile = path.join(dir, 'ca.pem');
  writeFileSync(caFile, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  const notPem = path.join(dir, 'not.pem');
  writeFileSync(notPem, 'hello');
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('applies REDIS_PASSWORD to a REDIS_URL without one, URL-encoded', () => {
    expect(loadConfig({ REDIS_URL: 'redis://h:1/2', REDIS_PASSWORD: 'p@ss:w%rd' }).redis).toEqual({ mode: 'single', url: 'redis://:p%40ss%3Aw%25rd@h:1/2' });
    // An ACL user name in the URL is kept.
    expect(loadConfig({ REDIS_URL: 'redis://app@h:1', REDIS_PASSWORD: 's3cret' }).redis).toMatchObject({ url: 'redis://app:s3cret@h:1' });
  });

  it('accepts the same password in both places and refuses two different ones', () => {
    expect(loadConfig({ REDIS_URL: 'redis://:p%40ss@h:1', REDIS_PASSWORD: 'p@ss' }).redis).toMatchObject({ url: 'redis://:p%40ss@h:1' });
    expect(loadConfig({ REDIS_URL: 'redis://:inurl@h:1' }).redis).toMatchObject({ url: 'redis://:inurl@h:1' });
    expect(variableOf({ REDIS_URL: 'redis://:one@h:1', REDIS_PASSWORD: 'two' })).toBe('REDIS_PASSWORD');
    expect(() => loadConfig({ REDIS_URL: 'redis://:one@h:1', REDIS_PASSWORD: 'two' })).toThrow(/REDIS_PASSWORD: differs from the password inside REDIS_URL/);
  });

  it('does not echo a malformed REDIS_URL (it may hold a password)', () => {
    expect(() => loadConfig({ REDIS_URL: 'http://:topsecret@h:1' })).toThrow(/REDIS_URL: .*scheme "http:"/);
    expect(() => loadConfig({ REDIS_URL: 'http://:topsecret@h:1' })).not.toThrow(/topsecret/);
    expect(() => loadConfig({ REDIS_URL: ':topsecret@@' })).not.toThrow(/topsecret/);
  });

  it('turns TLS on for rediss:// and for REDIS_TLS=1, with an optional CA bundle', () => {
    expect(loadConfig({ REDIS_URL: 'rediss://h:6380' }).redis).toEqual({ mode: 'single', url: 'rediss://h:6380', tls: {} });
    expect(loadConfig({ REDIS_URL: 'rediss://h:6380', REDIS_PASSWORD: 'x', REDIS_TLS_CA_FILE: caFile }).redis).toEqual({
      mode: 'single', url: 'rediss://:x@h:6380', tls: { ca: expect.stringContaining('BEGIN CERTIFICATE') },
    });
    expect(loadConfig({ REDIS_ADDR: 'h:6380', REDIS_TLS: 'true' }).redis).toEqual({ mode: 'single', url: 'rediss://h:6380/0', tls: {} });
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'a:1,b:2', REDIS_TLS: '1', REDIS_PASSWORD: 'pw', REDIS_TLS_CA_FILE: caFile }).redis).toMatchObject({
      mode: 'cluster', password: 'pw', tls: { ca: expect.stringContaining('BEGIN CERTIFICATE') },
    });
    expect(loadConfig({ REDIS_CLUSTER_NODES: 'a:1', REDIS_TLS: '0' }).redis).toMatchObject({ tls: undefined });
    expect(loadConfig({ REDIS_URL: 'redis://h:1', REDIS_TLS: 'no' }).redis).toMatchObject({ tls: undefined });
  });

  it.each([
    ['REDIS_TLS', { REDIS_URL: 'redis://h:1', REDIS_TLS: '1' }],
    ['REDIS_TLS', { REDIS_URL: 'rediss://h:1', REDIS_TLS: '0' }],
    ['REDIS_TLS', { REDIS_CLUSTER_NODES: 'a:1', REDIS_TLS: 'maybe' }],
    ['REDIS_TLS_CA_FILE', { REDIS_URL: 'redis://h:1', REDIS_TLS_CA_FILE: caFile }],
    ['REDIS_TLS_CA_FILE', { REDIS_CLUSTER_NODES: 'a:1', REDIS_TLS: '1', REDIS_TLS_CA_FILE: path.join(dir, 'missing.pem') }],
    ['REDIS_TLS_CA_FILE', { REDIS_URL: 'rediss://h:1', REDIS_TLS_CA_FILE: notPem }],
  ])('names %s when it is bad', (variable, env) => {
    expect(variableOf(env)).toBe(variable);
  });
});
