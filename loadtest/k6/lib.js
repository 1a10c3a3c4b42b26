// Shared helpers for the HarmonyFlow k6 scripts (init-context safe: no VU-only APIs at import).

/** Reads an env var as a positive number, or the fallback. */
export function envNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return n;
}

/** Reads an env var as a number >= 0 (0 allowed, e.g. an idle soak's write rate), or the fallback. */
export function envNonNegative(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a number >= 0, got "${raw}"`);
  return n;
}

/** A k6 duration ("90s", "10m", "1h30m") from an env var, checked, or the fallback. */
export function envDuration(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^(\d+h)?(\d+m)?(\d+s)?$/.test(raw)) throw new Error(`${name} must be a duration like 90s, 10m or 1h30m, got "${raw}"`);
  return raw;
}

/**
 * Access tokens from TOKENS_FILE (one per line, or a JSON array of strings; blank lines and
 * lines starting with # are ignored) or TOKEN. Must be called in the init context (k6 `open`).
 */
export function loadTokens() {
  if (__ENV.TOKENS_FILE) {
    const text = open(__ENV.TOKENS_FILE);
    let tokens;
    const trimmed = text.trim();
    if (trimmed.startsWith('[')) {
      tokens = JSON.parse(trimmed).map(String);
    } else {
      tokens = trimmed.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
    }
    if (tokens.length === 0) throw new Error(`TOKENS_FILE ${__ENV.TOKENS_FILE} holds no token`);
    return tokens;
  }
  if (__ENV.TOKEN) return [__ENV.TOKEN.trim()];
  throw new Error('set TOKEN (one access token) or TOKENS_FILE (one token per line); mint with: npm run token -- --sub load-user-1 --ttl 3600');
}

/** 8 random hex digits: names this test run's sessions so runs never collide. */
export function randomHex8() {
  let s = '';
  for (let i = 0; i < 8; i++) s += Math.floor(Math.random() * 16).toString(16);
  return s;
}

/** A valid (version-4 shaped) UUID for session number `n` of run `run` (8 hex digits). */
export function sessionUuid(run, n) {
  const tail = n.toString(16).padStart(12, '0').slice(-12);
  return `${run}-0000-4000-8000-${tail}`;
}

/** Default WebSocket URL: WS_URL, else derived from BASE_URL, else the local default. */
export function wsUrl() {
  if (__ENV.WS_URL) return __ENV.WS_URL;
  const base = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
  return base.replace(/^http/, 'ws') + '/ws';
}

export function baseUrl() {
  return (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
}

/** Message type numbers of the JSON protocol (SPEC §5). */
export const T = Object.freeze({
  HEARTBEAT: 1,
  HEARTBEAT_ACK: 2,
  SNAPSHOT_REQUEST: 3,
  SNAPSHOT_RESPONSE: 4,
  STATE_UPDATE: 5,
  ERROR: 6,
  AUTH: 7,
  AUTH_SUCCESS: 8,
  AUTH_FAILURE: 9,
  DEVICE_JOINED: 10,
  DEVICE_LEFT: 11,
  DEVICE_LIST: 12,
  BROADCAST: 13,
  ADMIN_UPDATE: 14,
  STATE_UPDATE_ACK: 15,
  HANDOFF_REQUESTED: 16,
  HANDOFF_COMPLETED: 17,
  RECONNECT: 18,
});
