/**
 * The token settings (JWT_*): one key (JWT_SECRET or JWT_PUBLIC_KEY_FILE), a key set (JWT_KEYS_FILE,
 * JWT_JWKS_URL) or both, the algorithms each key may verify, and the claims checked. Read once at
 * start-up; a setting that is weak, unreadable or contradicts another fails naming the variable.
 */
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { duration, fail, int, list, read, type Env } from './config-read.js';
import { keyFitsAlgorithm, readKeySetFile, SUPPORTED_JWT_ALGORITHMS, type JwtKey, type JwtKeySet } from './jwt-keys.js';
import { weakSecretReason } from './secret-strength.js';

/** The token defaults (config.ts's DEFAULTS includes them). */
export const JWT_DEFAULTS = {
  jwtAlgorithmsSymmetric: ['HS256'],
  jwtAlgorithmsAsymmetric: ['RS256', 'ES256'],
  jwtMaxAgeS: 24 * 60 * 60,
  jwtClockToleranceS: 30,
} as const;

export interface JwtConfig {
  /**
   * The single key, as configured: the JWT_SECRET string or the JWT_PUBLIC_KEY_FILE contents
   * (development tokens are minted with the secret); undefined when only a key set is configured.
   * Never logged.
   */
  key: string | Buffer | undefined;
  /**
   * The single key as a KeyObject, built once (given a string, jsonwebtoken first tries to parse
   * it as a public key on every verification, which cost ~390 µs per token in the benchmark),
   * with the algorithms of JWT_ALGORITHMS that fit it. It verifies tokens without a `kid`, and
   * every token while no key set is configured.
   */
  singleKey: JwtKey | undefined;
  /** JWT_ALGORITHMS: every algorithm a token may be signed with, whichever key verifies it. */
  algorithms: string[];
  /** JWT_KEYS_FILE: the key set file, read at start and again on SIGHUP. */
  keysFile: string | undefined;
  /** The key set as read at start (the relay's current set may be newer: TokenKeys). */
  keySet: JwtKeySet | undefined;
  /** JWT_JWKS_URL: public keys by kid, fetched when a token names a kid not cached. */
  jwksUrl: string | undefined;
  issuer: string | undefined;
  /** Unset: a token that carries an `aud` claim is refused (it was meant for another service). */
  audience: string | undefined;
  /**
   * JWT_MAX_AGE in seconds: the longest lifetime (`exp - iat`) and age (now - `iat`) of a token
   * the relay accepts; tokens must then carry `iat`. 0: no limit.
   */
  maxAgeS: number;
  /** Clock skew allowed between the issuer and this node, on `exp`, `nbf` and `iat` (seconds). */
  clockToleranceS: number;
}

/** The HTTP publish API (src/publish/): on only when PUBLISH_PORT is set. */

/** Hosts a JWKS may be fetched from over plain http: this machine only. */
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** JWT_JWKS_URL: https, or http to this machine (a test issuer); anything else is refused. */
function readJwksUrl(env: Env): string | undefined {
  const raw = read(env, 'JWT_JWKS_URL', z.string(), undefined as string | undefined);
  if (raw === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    fail('JWT_JWKS_URL', 'must be an https:// URL');
  }
  if (url.protocol === 'https:' || (url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) return raw;
  fail(
    'JWT_JWKS_URL',
    'must be an https:// URL (http:// only to localhost, 127.0.0.1 or ::1): keys fetched in the clear can be replaced on the way',
  );
}

/** JWT_SECRET or JWT_PUBLIC_KEY_FILE as configured (at most one of them), or undefined. */
function readSingleKey(env: Env, keySetConfigured: boolean): string | Buffer | undefined {
  const secret = env.JWT_SECRET;
  const keyFile = env.JWT_PUBLIC_KEY_FILE;
  if (secret && keyFile) fail('JWT_SECRET', 'set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both');
  if (keyFile) {
    try {
      return readFileSync(keyFile);
    } catch (error) {
      fail('JWT_PUBLIC_KEY_FILE', `cannot read ${keyFile}: ${(error as Error).message}`);
    }
  }
  if (secret) {
    const weak = weakSecretReason(secret);
    if (weak !== undefined) fail('JWT_SECRET', weak);
    return secret;
  }
  if (!keySetConfigured) {
    fail('JWT_SECRET', 'required (or JWT_PUBLIC_KEY_FILE for RS*/ES*/PS* tokens, or a key set: JWT_KEYS_FILE, JWT_JWKS_URL)');
  }
  return undefined;
}

/**
 * The single key with the algorithms of JWT_ALGORITHMS that fit it. Alone (no key set), every
 * algorithm must fit it, as before key sets; beside a key set, JWT_ALGORITHMS also names the
 * key set's algorithms, and at least one must fit the single key.
 */
function singleKeyOf(key: string | Buffer, algorithms: string[], keySetConfigured: boolean): JwtKey {
  const symmetric = typeof key === 'string';
  const variable = symmetric ? 'JWT_SECRET' : 'JWT_PUBLIC_KEY_FILE';
  if (!keySetConfigured) {
    for (const algorithm of algorithms) {
      if (symmetric !== algorithm.startsWith('HS')) {
        fail(
          'JWT_ALGORITHMS',
          `${algorithm} does not fit ${symmetric ? 'JWT_SECRET (HS* only)' : 'JWT_PUBLIC_KEY_FILE (RS*/PS*/ES* only)'}`,
        );
      }
    }
  }
  let verifyKey: KeyObject;
  try {
    verifyKey = symmetric ? createSecretKey(Buffer.from(key)) : createPublicKey(key);
  } catch (error) {
    fail('JWT_PUBLIC_KEY_FILE', `not a PEM public key: ${(error as Error).message}`);
  }
  const fitting = algorithms.filter((algorithm) => keyFitsAlgorithm(verifyKey, algorithm));
  if (fitting.length === 0) {
    fail('JWT_ALGORITHMS', `names no algorithm that fits the key of ${variable} (${verifyKey.asymmetricKeyType ?? 'HMAC'} key)`);
  }
  return { kid: undefined, algorithms: fitting, key: verifyKey };
}

export function loadJwt(env: Env): JwtConfig {
  const keysFile = read(env, 'JWT_KEYS_FILE', z.string(), undefined as string | undefined);
  const jwksUrl = readJwksUrl(env);
  const keySetConfigured = keysFile !== undefined || jwksUrl !== undefined;
  const key = readSingleKey(env, keySetConfigured);
  const defaults = keySetConfigured
    ? [...JWT_DEFAULTS.jwtAlgorithmsSymmetric, ...JWT_DEFAULTS.jwtAlgorithmsAsymmetric]
    : typeof key === 'string'
      ? JWT_DEFAULTS.jwtAlgorithmsSymmetric
      : JWT_DEFAULTS.jwtAlgorithmsAsymmetric;
  const algorithms = read(env, 'JWT_ALGORITHMS', list, [...defaults]);
  if (algorithms.length === 0) fail('JWT_ALGORITHMS', 'must name at least one algorithm');
  for (const algorithm of algorithms) {
    if (!SUPPORTED_JWT_ALGORITHMS.includes(algorithm)) fail('JWT_ALGORITHMS', `unsupported algorithm ${algorithm} (none is never allowed)`);
  }
  let keySet: JwtKeySet | undefined;
  if (keysFile !== undefined) {
    try {
      keySet = readKeySetFile(keysFile, algorithms);
    } catch (error) {
      fail('JWT_KEYS_FILE', (error as Error).message);
    }
  }
  return {
    key,
    singleKey: key === undefined ? undefined : singleKeyOf(key, algorithms, keySetConfigured),
    algorithms,
    keysFile,
    keySet,
    jwksUrl,
    issuer: read(env, 'JWT_ISSUER', z.string(), undefined as string | undefined),
    audience: read(env, 'JWT_AUDIENCE', z.string(), undefined as string | undefined),
    maxAgeS: read(env, 'JWT_MAX_AGE', duration(366 * 86_400), JWT_DEFAULTS.jwtMaxAgeS),
    clockToleranceS: read(env, 'JWT_CLOCK_TOLERANCE_S', int(0, 300), JWT_DEFAULTS.jwtClockToleranceS),
  };
}
