#!/usr/bin/env -S node --max-semi-space-size=8 --heap-growing-percent=50 --single-threaded-gc
import { ConfigError, loadConfig } from './config';
import { createNode } from './node';
import { uwsLoadError } from './uwsRuntime';

async function main(): Promise<void> {
  if (uwsLoadError) {
    process.stderr.write(`harmonyflow: cannot start: ${uwsLoadError.message}\n`);
    process.exit(1);
  }
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`harmonyflow: bad configuration: ${err.message}\n`);
      process.exit(1);
    }
    throw err;
  }
  const node = await createNode(config);
  await node.listen();
  if (config.jwt.ephemeral) {
    const token = await node.tokens.signAccess('dev-user', 'admin', 24 * 3600);
    node.log.warn(
      { dev_token: token },
      'JWT_SECRET/JWT_REFRESH_SECRET not set: using random per-process secrets (dev mode). The dev_token above is an admin access token valid 24h; tokens from `npm run token` do not work against this process.',
    );
    process.stdout.write(`\nDev admin token (24h):\n${token}\n\n`);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    node.log.info({ signal }, 'shutting down');
    // Well inside Kubernetes' 30 s grace (minus a 5 s preStop sleep): never be SIGKILLed mid-write.
    const hard = setTimeout(() => process.exit(1), 20_000);
    hard.unref();
    node.shutdown().then(
      () => process.exit(0),
      (err) => {
        node.log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`harmonyflow: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
