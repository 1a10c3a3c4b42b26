#!/usr/bin/env node
/**
 * Dev CLI: mints tokens with the secrets in the environment.
 *   npm run token -- --sub user-123 [--role admin] [--ttl 900] [--refresh]
 * Prints the access token (or, with --refresh, a refresh token) on stdout.
 */
import { ConfigError, loadConfig } from '../config';
import { TokenService, type Role } from '../auth/tokens';

function usage(msg?: string): never {
  if (msg) process.stderr.write(`token: ${msg}\n`);
  process.stderr.write('usage: npm run token -- --sub <user-id> [--role user|admin] [--ttl <seconds>] [--refresh]\n');
  process.exit(2);
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  let sub = 'user-123';
  let role: Role = 'user';
  let ttl: number | undefined;
  let refresh = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    const next = () => args[++i] ?? usage(`${a} needs a value`);
    if (a === '--sub') sub = next();
    else if (a === '--role') {
      const r = next();
      if (r !== 'user' && r !== 'admin') usage('--role must be user or admin');
      role = r;
    } else if (a === '--ttl') {
      ttl = Number(next());
      if (!Number.isInteger(ttl) || ttl <= 0) usage('--ttl must be a positive whole number of seconds');
    } else if (a === '--refresh') refresh = true;
    else if (a === '--help' || a === '-h') usage();
    else usage(`unknown argument ${a}`);
  }
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) usage(err.message);
    throw err;
  }
  if (config.jwt.ephemeral) {
    process.stderr.write(
      'token: JWT_SECRET/JWT_REFRESH_SECRET are not set, so this token is signed with a throwaway key and no server will accept it.\n' +
        '       Start the server and mint tokens with the same JWT_SECRET and JWT_REFRESH_SECRET (see README).\n',
    );
  }
  const tokens = new TokenService(config.jwt);
  const token = refresh ? await tokens.signRefresh(sub, role) : await tokens.signAccess(sub, role, ttl);
  process.stdout.write(token + '\n');
}

main().catch((err) => {
  process.stderr.write(`token: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
