/**
 * Public keys by kid from a JWKS URL (JWT_JWKS_URL), through jwks-rsa with its cache and its
 * request rate limit on: a kid found is served from memory for {@link JWKS_SETTINGS}.cacheMaxAgeMs,
 * a kid not cached makes one request for the whole set, and at most
 * {@link JWKS_SETTINGS}.requestsPerMinute requests go out a minute (past that a lookup fails at
 * once, without a request). A lookup never throws: it says what it found, or why not.
 */
import jwksRsa from 'jwks-rsa';

/** The jwks-rsa settings (README "Configuration", JWT_JWKS_URL). */
export const JWKS_SETTINGS = {
  /** A key found stays usable this long without asking again; a key removed from the JWKS is refused after it at the latest. */
  cacheMaxAgeMs: 10 * 60 * 1000,
  /** Keys kept in the cache (least recently used dropped first). */
  cacheMaxEntries: 20,
  /** Requests to the JWKS URL per minute, at most. */
  requestsPerMinute: 10,
  /** A request slower than this fails (the hello waits for it). */
  timeoutMs: 5_000,
} as const;

export type JwksLookup =
  | { found: true; kid: string; alg: string | undefined; publicKeyPem: string }
  | {
      found: false;
      /** `absent`: the JWKS does not list the kid; `rate-limited`: not asked (the request budget is spent); `unavailable`: the request failed. */
      why: 'absent' | 'rate-limited' | 'unavailable';
      /** For the debug log: the error's name or code, never a response body. */
      detail: string;
    };

/** Where the keys of a JWKS come from; tests put a fake in its place. */
export interface JwksSource {
  lookup(kid: string): Promise<JwksLookup>;
}

/** The jwks-rsa client for `url` with the settings above. */
export function jwksRsaSource(url: string): JwksSource {
  const client = new jwksRsa.JwksClient({
    jwksUri: url,
    cache: true,
    cacheMaxAge: JWKS_SETTINGS.cacheMaxAgeMs,
    cacheMaxEntries: JWKS_SETTINGS.cacheMaxEntries,
    rateLimit: true,
    jwksRequestsPerMinute: JWKS_SETTINGS.requestsPerMinute,
    timeout: JWKS_SETTINGS.timeoutMs,
  });
  return {
    async lookup(kid) {
      try {
        const key = await client.getSigningKey(kid);
        // jwks-rsa types alg as a string, but leaves it out when the JWK has none.
        const alg = (key as { alg?: unknown }).alg;
        return { found: true, kid, alg: typeof alg === 'string' ? alg : undefined, publicKeyPem: key.getPublicKey() };
      } catch (error) {
        const name = error instanceof Error ? error.name : 'Error';
        if (name === 'SigningKeyNotFoundError') return { found: false, why: 'absent', detail: 'the JWKS does not list it' };
        if (name === 'JwksRateLimitError') return { found: false, why: 'rate-limited', detail: 'JWKS request rate limit reached' };
        const code = (error as { code?: unknown } | undefined)?.code;
        return { found: false, why: 'unavailable', detail: `JWKS request failed (${typeof code === 'string' ? code : name})` };
      }
    },
  };
}
