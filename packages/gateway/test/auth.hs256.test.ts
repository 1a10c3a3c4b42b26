import { createHmac, createSecretKey, generateKeyPairSync } from 'node:crypto';
import { SignJWT, errors as joseErrors, jwtVerify } from 'jose';
import { verifyHs256 } from '../src/auth/hs256';
import { TokenService } from '../src/auth/tokens';

/**
 * The synchronous HS256 verifier of access tokens (auth/hs256.ts) against jose's jwtVerify with
 * the options the service used before: the same verdict for every token, or a documented stricter
 * one.
 */
const secret = Buffer.from('0123456789abcdef0123456789abcdef');
const key = createSecretKey(secret);
const now = () => Math.floor(Date.now() / 1000);

const b64 = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
/** A compact token with any header and payload, signed with HMAC-SHA256 over what is given. */
function craft(header: unknown, payload: unknown, hmacKey: Buffer = secret, hash = 'sha256'): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac(hash, hmacKey).update(input).digest('base64url')}`;
}
const claims = (extra: Record<string, unknown> = {}) => ({ sub: 'alice', typ: 'access', iat: now(), exp: now() + 60, ...extra });

async function joseVerdict(token: string): Promise<string> {
  try {
    const { payload } = await jwtVerify(token, key, { requiredClaims: ['exp', 'sub'], algorithms: ['HS256'] });
    return JSON.stringify(payload);
  } catch (err) {
    if (err instanceof joseErrors.JWTExpired) return 'expired';
    if (err instanceof joseErrors.JWTClaimValidationFailed || err instanceof joseErrors.JWTInvalid) return 'claims';
    return 'signature';
  }
}
function ownVerdict(token: string): string {
  const r = verifyHs256(token, key, now());
  return typeof r === 'string' ? r : JSON.stringify(r);
}

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const cases: Array<[string, () => Promise<string> | string]> = [
  ['a valid token (jose signed)', () => new SignJWT({ role: 'user', typ: 'access' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject('alice').setIssuedAt().setExpirationTime('5m').sign(key)],
  ['a valid token without typ header', () => craft({ alg: 'HS256' }, claims())],
  ['expired a second ago', () => craft({ alg: 'HS256' }, claims({ exp: now() - 1 }))],
  ['expiring this second', () => craft({ alg: 'HS256' }, claims({ exp: now() }))],
  ['not valid before a minute from now', () => craft({ alg: 'HS256' }, claims({ nbf: now() + 60 }))],
  ['valid since a minute ago (nbf)', () => craft({ alg: 'HS256' }, claims({ nbf: now() - 60 }))],
  ['no sub', () => craft({ alg: 'HS256' }, { exp: now() + 60 })],
  ['no exp', () => craft({ alg: 'HS256' }, { sub: 'alice' })],
  ['exp as text', () => craft({ alg: 'HS256' }, claims({ exp: String(now() + 60) }))],
  ['iat as text', () => craft({ alg: 'HS256' }, claims({ iat: 'yesterday' }))],
  ['nbf as text', () => craft({ alg: 'HS256' }, claims({ nbf: 'now' }))],
  ['a claims set that is an array', () => craft({ alg: 'HS256' }, [1, 2])],
  ['a claims set that is not JSON', () => craft({ alg: 'HS256' }, 'not json')],
  ['another secret', () => craft({ alg: 'HS256' }, claims(), Buffer.from('another secret, long enough 1234'))],
  ['HS512 with the same secret', () => craft({ alg: 'HS512' }, claims(), secret, 'sha512')],
  ['HS256 header over an HS512 signature', () => craft({ alg: 'HS256' }, claims(), secret, 'sha512')],
  ['alg none, no signature', () => `${b64({ alg: 'none' })}.${b64(claims())}.`],
  ['alg none with an HS256 signature', () => craft({ alg: 'none' }, claims())],
  ['no alg', () => craft({ typ: 'JWT' }, claims())],
  ['a header that is not JSON', () => { const t = craft({ alg: 'HS256' }, claims()).split('.'); return `${b64('{alg')}.${t[1]}.${t[2]}`; }],
  ['a payload changed after signing', () => { const t = craft({ alg: 'HS256' }, claims()).split('.'); return `${t[0]}.${b64(claims({ sub: 'mallory' }))}.${t[2]}`; }],
  ['a signature cut short', () => craft({ alg: 'HS256' }, claims()).slice(0, -4)],
  ['four segments', () => `${craft({ alg: 'HS256' }, claims())}.x`],
  ['two segments', () => craft({ alg: 'HS256' }, claims()).split('.').slice(0, 2).join('.')],
  ['empty', () => ''],
  ['dots only', () => '..'],
  ['an RS256 token', () => new SignJWT({ typ: 'access' }).setProtectedHeader({ alg: 'RS256' }).setSubject('alice').setExpirationTime('5m').sign(rsa.privateKey)],
];

describe('verifyHs256 gives jose\'s verdict', () => {
  it.each(cases)('%s', async (_name, make) => {
    const token = await make();
    expect(ownVerdict(token)).toBe(await joseVerdict(token));
  });

  it('is stricter where tokens of ours never go: any crit header is refused (jose accepts crit b64)', async () => {
    const token = craft({ alg: 'HS256', crit: ['b64'], b64: true }, claims());
    expect(await joseVerdict(token)).not.toBe('signature');
    expect(ownVerdict(token)).toBe('signature');
  });

  it('returns the claims of a valid token', () => {
    const c = claims({ role: 'admin' });
    expect(verifyHs256(craft({ alg: 'HS256', typ: 'JWT' }, c), key, now())).toEqual(c);
  });
});

describe('TokenService.verifyAccess answers with the SPEC error codes', () => {
  const tokens = new TokenService({
    secret, refreshSecret: Buffer.from('another secret for refresh tokens'), ephemeral: false, jwksUrl: null, issuer: null, audience: null,
    accessTtlSeconds: 60, refreshTtlSeconds: 600,
  });
  const refusal = (token: string) => tokens.verifyAccess(token).then(() => 'accepted', (err: { code?: string }) => err.code);

  it('accepts its own token and reads who it is', async () => {
    expect(await tokens.verifyAccess(await tokens.signAccess('alice', 'admin'))).toMatchObject({ userId: 'alice', role: 'admin' });
  });

  it('token_expired for an expired token, invalid_token for the rest', async () => {
    expect(await refusal(craft({ alg: 'HS256' }, claims({ exp: now() - 1 })))).toBe('token_expired');
    expect(await refusal(craft({ alg: 'HS256' }, claims({ nbf: now() + 60 })))).toBe('invalid_token');
    expect(await refusal(craft({ alg: 'HS256' }, claims(), Buffer.from('another secret, long enough 1234')))).toBe('invalid_token');
    expect(await refusal(craft({ alg: 'HS256' }, claims({ typ: 'refresh' })))).toBe('invalid_token');
    expect(await refusal(await tokens.signRefresh('alice', 'user'))).toBe('invalid_token');
    expect(await refusal('')).toBe('invalid_token');
  });
});
