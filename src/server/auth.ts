import jwt from 'jsonwebtoken';
import type { JwtConfig } from '../config.js';
import { isValidUserId } from '../protocol/user-id.js';

export interface Identity {
  user: string;
  /** When the token expires (ms since epoch). */
  expiresAt: number | undefined;
}

export type AuthFailure = 'unauthenticated' | 'expired' | 'forbidden';
export type AuthResult = { ok: true; identity: Identity } | { ok: false; failure: AuthFailure; reason: string };

/**
 * Verifies a JWT with the configured key, pinned algorithms and, when configured, issuer and
 * audience. `sub` must be a valid user id (else `forbidden`). Reasons never contain the token.
 */
export function verifyToken(token: string, config: JwtConfig): AuthResult {
  let claims: string | jwt.JwtPayload;
  try {
    claims = jwt.verify(token, config.verifyKey, {
      algorithms: config.algorithms as jwt.Algorithm[],
      ...(config.issuer === undefined ? {} : { issuer: config.issuer }),
      ...(config.audience === undefined ? {} : { audience: config.audience }),
    });
  } catch (error) {
    if (error instanceof jwt.TokenExpiredError) return { ok: false, failure: 'expired', reason: 'token expired' };
    const detail = error instanceof Error ? error.message : 'invalid token';
    return { ok: false, failure: 'unauthenticated', reason: `invalid token: ${detail}`.slice(0, 100) };
  }
  if (typeof claims === 'string') return { ok: false, failure: 'unauthenticated', reason: 'invalid token: payload is not a JSON object' };
  if (!isValidUserId(claims.sub)) return { ok: false, failure: 'forbidden', reason: 'token subject is not a valid user id' };
  // exp is enforced for the whole life of a connection, so a token must have one.
  if (typeof claims.exp !== 'number') return { ok: false, failure: 'unauthenticated', reason: 'invalid token: no exp claim' };
  return { ok: true, identity: { user: claims.sub, expiresAt: claims.exp * 1000 } };
}

/**
 * Who a hello speaks for: the hello's own token when it has one, else the identity of the
 * upgrade's Authorization header (still unexpired at `now`), else nobody.
 */
export function authenticateHello(
  token: string | undefined,
  headerIdentity: Identity | undefined,
  config: JwtConfig,
  now: number,
): AuthResult {
  if (token !== undefined) return verifyToken(token, config);
  if (headerIdentity) {
    if (headerIdentity.expiresAt !== undefined && headerIdentity.expiresAt <= now)
      return { ok: false, failure: 'expired', reason: 'token expired' };
    return { ok: true, identity: headerIdentity };
  }
  return { ok: false, failure: 'unauthenticated', reason: 'no token: send one in hello or in the Authorization header' };
}

/** Signs a token for a user with an HMAC secret (development tokens and tests). */
export function signDevToken(
  user: string,
  secret: string,
  options: { expiresInSeconds?: number; algorithm?: jwt.Algorithm; issuer?: string; audience?: string } = {},
): string {
  return jwt.sign({ sub: user }, secret, {
    algorithm: options.algorithm ?? 'HS256',
    expiresIn: options.expiresInSeconds ?? 3600,
    ...(options.issuer === undefined ? {} : { issuer: options.issuer }),
    ...(options.audience === undefined ? {} : { audience: options.audience }),
  });
}
