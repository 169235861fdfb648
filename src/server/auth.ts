/**
 * Token verification for the upgrade, `hello` and `refresh`: one function, so every path applies
 * the same checks. The key is chosen by the token's `kid` (token-keys.ts) and pins the
 * algorithm. A failure carries a fixed, generic `reason` for the client (the close reason or HTTP
 * body: it tells an attacker nothing about which check failed) and a `detail` for the relay's
 * debug log. Neither ever contains the token, its claims or its signature; the detail may name
 * the header's `kid` (cut to 64 characters), which names a key, not a user.
 */
import type { KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { JwtConfig } from '../config.js';
import type { JwtKey } from '../jwt-keys.js';
import { isValidUserId } from '../protocol/user-id.js';
import type { TokenKeys } from './token-keys.js';

export interface Identity {
  user: string;
  /**
   * Until when the relay honours the token (ms since epoch): its `exp` plus the clock tolerance,
   * the same instant at which verification would start refusing it.
   */
  expiresAt: number | undefined;
}

export type AuthFailure = 'unauthenticated' | 'expired' | 'forbidden';
export type AuthResult =
  | { ok: true; identity: Identity }
  | {
      ok: false;
      failure: AuthFailure;
      /** For the client: one of the fixed reasons below. */
      reason: string;
      /** For the relay's debug log: which check failed. Never contains the token. */
      detail: string;
    };
type Failed = Exclude<AuthResult, { ok: true }>;

/** The close reasons (and HTTP bodies) of a refused token; docs/PROTOCOL.md sections 3.2 and 9. */
export const AuthReason = {
  invalid: 'invalid token',
  expired: 'token expired',
  badSubject: 'token subject is not a valid user id',
} as const;

const MAX_DETAIL = 200;

const invalid = (detail: string): Failed => ({ ok: false, failure: 'unauthenticated', reason: AuthReason.invalid, detail });
const expired = (detail: string): Failed => ({ ok: false, failure: 'expired', reason: AuthReason.expired, detail });

/**
 * What the library said, without the token: its own errors name the check (and at most the
 * configured issuer or audience); anything else (a JSON syntax error quotes the payload) is
 * reduced to its class name.
 */
function libraryDetail(error: unknown): string {
  if (error instanceof jwt.JsonWebTokenError) return error.message.slice(0, MAX_DETAIL);
  return error instanceof Error ? `${error.name}: the token could not be decoded` : 'the token could not be decoded';
}

/**
 * The relay's own claim checks, after the signature, `exp`, `nbf`, issuer and audience passed:
 * - with JWT_AUDIENCE unset, a token with an `aud` claim is refused: it was minted for some
 *   audience, and this relay cannot tell whether it is the one;
 * - `iat`, when present, is a number and at most `clockToleranceS` in the future;
 * - with a maximum age: `iat` is required, the lifetime `exp - iat` is at most the maximum
 *   (a token valid for a century is refused however young it is), and the token is no older
 *   than the maximum plus the tolerance (refused as expired: a fresh token fixes it).
 * `nowS` is the verification time in whole seconds.
 */
export function checkClaims(claims: jwt.JwtPayload & { exp: number }, config: JwtConfig, nowS: number): Failed | undefined {
  if (config.audience === undefined && claims.aud !== undefined) return invalid('the token has an aud claim and JWT_AUDIENCE is not set');
  const { iat } = claims;
  if (iat !== undefined && typeof iat !== 'number') return invalid('iat is not a number');
  if (iat !== undefined && iat > nowS + config.clockToleranceS) return invalid('iat is in the future (beyond JWT_CLOCK_TOLERANCE_S)');
  if (config.maxAgeS === 0) return undefined;
  if (iat === undefined) return invalid('no iat claim (required while JWT_MAX_AGE is set)');
  if (claims.exp - iat > config.maxAgeS) return invalid('lifetime (exp - iat) is longer than JWT_MAX_AGE');
  // Implied by the lifetime limit and exp (plus tolerance); checked on its own so that the age
  // rule does not depend on the order of the checks above it.
  if (nowS - iat > config.maxAgeS + config.clockToleranceS) return expired('issued longer ago than JWT_MAX_AGE');
  return undefined;
}

/** The header of a compact JWS (its first part), or undefined when it is not a JSON object. */
function tokenHeader(token: string): Record<string, unknown> | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  try {
    const header: unknown = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8'));
    return typeof header === 'object' && header !== null && !Array.isArray(header) ? (header as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies a JWT with `key` and its pinned algorithms, issuer and audience when set, and the
 * claim checks above, at `nowMs`. `sub` must be a valid user id (else `forbidden`), and `exp`
 * must be present.
 */
export function verifyWithKey(token: string, key: JwtKey, config: JwtConfig, nowMs: number): AuthResult {
  const nowS = Math.floor(nowMs / 1000);
  let claims: string | jwt.JwtPayload;
  try {
    claims = jwt.verify(token, key.key, {
      algorithms: key.algorithms as jwt.Algorithm[],
      clockTimestamp: nowS,
      clockTolerance: config.clockToleranceS,
      ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
      ...(config.audience === undefined ? {} : { audience: config.audience }),
    });
  } catch (error) {
    if (error instanceof jwt.TokenExpiredError) return expired(libraryDetail(error));
    return invalid(libraryDetail(error));
  }
  if (typeof claims === 'string') return invalid('payload is not a JSON object');
  if (!isValidUserId(claims.sub))
    return { ok: false, failure: 'forbidden', reason: AuthReason.badSubject, detail: 'sub is not a valid user id' };
  // exp is enforced for the whole life of a connection, so a token must have one.
  const { exp } = claims;
  if (typeof exp !== 'number') return invalid('no exp claim');
  const refused = checkClaims({ ...claims, exp }, config, nowS);
  if (refused) return refused;
  return { ok: true, identity: { user: claims.sub, expiresAt: (exp + config.clockToleranceS) * 1000 } };
}

/**
 * Verifies a JWT at `nowMs` (the system clock by default) with the key its header's `kid`
 * selects (token-keys.ts): an unknown kid is refused like any invalid token. Resolves, never
 * rejects.
 */
export async function verifyToken(token: string, keys: TokenKeys, nowMs: number = Date.now()): Promise<AuthResult> {
  const header = tokenHeader(token);
  if (header === undefined) return invalid('jwt malformed');
  const { kid } = header;
  if (kid !== undefined && typeof kid !== 'string') return invalid('kid is not a string');
  const selected = await keys.select(kid, nowMs);
  if (!selected.ok) return invalid(selected.detail);
  return verifyWithKey(token, selected.key, keys.config, nowMs);
}

/**
 * Who a hello speaks for: the hello's own token when it has one, else the identity of the
 * upgrade's Authorization header (still unexpired at `now`), else nobody.
 */
export async function authenticateHello(
  token: string | undefined,
  headerIdentity: Identity | undefined,
  keys: TokenKeys,
  now: number,
): Promise<AuthResult> {
  if (token !== undefined) return verifyToken(token, keys, now);
  if (headerIdentity) {
    if (headerIdentity.expiresAt !== undefined && headerIdentity.expiresAt <= now) return expired('the upgrade token expired before hello');
    return { ok: true, identity: headerIdentity };
  }
  return {
    ok: false,
    failure: 'unauthenticated',
    reason: 'no token: send one in hello or in the Authorization header',
    detail: 'no token in hello or in the upgrade',
  };
}

/** Signs a token for a user with an HMAC secret (development tokens and tests); `keyId` goes into the header as `kid`. */
export function signDevToken(
  user: string,
  secret: string | KeyObject,
  options: { expiresInSeconds?: number; algorithm?: jwt.Algorithm; issuer?: string; audience?: string; keyId?: string } = {},
): string {
  return jwt.sign({ sub: user }, secret, {
    algorithm: options.algorithm ?? 'HS256',
    expiresIn: options.expiresInSeconds ?? 3600,
    ...(options.keyId === undefined ? {} : { keyid: options.keyId }),
    ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
    ...(options.audience === undefined ? {} : { audience: options.audience }),
  });
}
