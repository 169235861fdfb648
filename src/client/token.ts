/**
 * Tokens: where the client gets them, and when it asks for a fresh one. The JWT is decoded only
 * to read `exp` and `sub`; it is never verified here (the relay does that).
 */

/** Why the client asks for a token. */
export type TokenReason =
  /** First connect, or a reconnect after a network failure. */
  | 'connect'
  /** The current token expires soon; the new one is sent in a `refresh` frame. */
  | 'refresh'
  /** The relay refused the token (close 4001): return a different one. */
  | 'rejected'
  /** The relay closed with 4008 (expired): return a fresh one. */
  | 'expired';

export interface TokenRequest {
  readonly reason: TokenReason;
}

/** Returns the JWT to authenticate with. Called before every connection attempt and before expiry. */
export type TokenProvider = (request: TokenRequest) => string | Promise<string>;

export const DEFAULT_TOKEN_REFRESH_LEAD_MS = 30_000;
/** Never schedule refreshes closer together than this, whatever the token says. */
export const MIN_TOKEN_REFRESH_DELAY_MS = 1_000;

interface JwtClaims {
  exp?: unknown;
  sub?: unknown;
}

function decodeBase64Url(segment: string): string {
  const base64 = segment.replace(/-/g, '+').replace(/_/g, '/');
  const padded = base64 + '='.repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function readClaims(token: string): JwtClaims | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined) return undefined;
  try {
    const claims: unknown = JSON.parse(decodeBase64Url(payload));
    return typeof claims === 'object' && claims !== null ? claims : undefined;
  } catch {
    return undefined;
  }
}

/** The token's expiry in ms since the epoch, or undefined when it is not a JWT with a numeric `exp`. */
export function jwtExpiryMs(token: string): number | undefined {
  const exp = readClaims(token)?.exp;
  return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : undefined;
}

/** The token's `sub` (the relay's user id), or undefined. */
export function jwtSubject(token: string): string | undefined {
  const sub = readClaims(token)?.sub;
  return typeof sub === 'string' ? sub : undefined;
}

/**
 * How long to wait before refreshing a token that expires at `expiresAtMs`: `leadMs` before
 * expiry, or half the remaining lifetime when less than two leads remain, and never less than
 * {@link MIN_TOKEN_REFRESH_DELAY_MS}.
 */
export function tokenRefreshDelayMs(expiresAtMs: number, nowMs: number, leadMs: number): number {
  const remaining = expiresAtMs - nowMs;
  const delay = remaining > 2 * leadMs ? remaining - leadMs : remaining / 2;
  return Math.max(MIN_TOKEN_REFRESH_DELAY_MS, Math.floor(delay));
}

/** Wraps a fixed token as a provider. */
export function toTokenProvider(token: string | TokenProvider): TokenProvider {
  return typeof token === 'string' ? () => token : token;
}
