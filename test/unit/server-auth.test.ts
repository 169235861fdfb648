/**
 * Token checks of src/server/auth.ts at a fixed time, with the single key (JWT_SECRET): the
 * audience rule, iat in the future, JWT_MAX_AGE (lifetime and age), the clock tolerance on
 * exp/nbf/iat, and the generic reasons. Key selection by kid: server-token-keys.test.ts.
 */
import jwt from 'jsonwebtoken';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig, type JwtConfig } from '../../src/config.js';
import { AuthReason, authenticateHello, checkClaims, verifyToken, type AuthResult } from '../../src/server/auth.js';
import { TokenKeys } from '../../src/server/token-keys.js';

const SECRET = 'auth-unit-0123456789-abcdefghijklmnopqrstuvwxyz';
const NOW_S = Date.UTC(2030, 0, 1) / 1000;
const NOW_MS = NOW_S * 1000;
const YEAR_S = 365 * 24 * 3600;

function jwtConfig(env: Record<string, string> = {}): JwtConfig {
  return loadConfig({ JWT_SECRET: SECRET, ...env }).jwt;
}

/** A token with exactly these claims (no defaults added but `sub`): a string payload is signed as it is. */
function sign(claims: Record<string, unknown>): string {
  return jwt.sign(JSON.stringify({ sub: 'alice', ...claims }), SECRET, { algorithm: 'HS256' });
}

/** verifyToken with the keys of `config` (no key set: the single key). */
function verify(token: string, config: JwtConfig, now?: number): Promise<AuthResult> {
  return verifyToken(token, new TokenKeys(config), now);
}

async function refusal(token: string, config: JwtConfig, now = NOW_MS): Promise<{ failure: string; reason: string; detail: string }> {
  const result = await verify(token, config, now);
  if (result.ok) throw new Error('the token was accepted');
  return { failure: result.failure, reason: result.reason, detail: result.detail };
}

describe('verifyToken', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(NOW_MS);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('accepts a good token and honours it until exp plus the clock tolerance', async () => {
    const result = await verify(sign({ iat: NOW_S, exp: NOW_S + 3600 }), jwtConfig(), NOW_MS);
    expect(result).toEqual({ ok: true, identity: { user: 'alice', expiresAt: (NOW_S + 3600 + 30) * 1000 } });
  });

  it('uses the system time when none is given (the upgrade path)', async () => {
    expect((await verify(jwt.sign({ sub: 'alice' }, SECRET, { expiresIn: 60 }), jwtConfig())).ok).toBe(true);
  });

  describe('audience', () => {
    const withAud = () => sign({ iat: NOW_S, exp: NOW_S + 60, aud: 'billing-service' });

    it('refuses a token with an aud claim while JWT_AUDIENCE is unset', async () => {
      expect(await refusal(withAud(), jwtConfig())).toEqual({
        failure: 'unauthenticated',
        reason: AuthReason.invalid,
        detail: 'the token has an aud claim and JWT_AUDIENCE is not set',
      });
    });

    it('checks it against JWT_AUDIENCE when set', async () => {
      expect((await verify(withAud(), jwtConfig({ JWT_AUDIENCE: 'billing-service' }), NOW_MS)).ok).toBe(true);
      expect((await refusal(withAud(), jwtConfig({ JWT_AUDIENCE: 'inbox-relay' }))).reason).toBe(AuthReason.invalid);
      expect((await refusal(sign({ iat: NOW_S, exp: NOW_S + 60 }), jwtConfig({ JWT_AUDIENCE: 'inbox-relay' }))).reason).toBe(
        AuthReason.invalid,
      );
    });
  });

  describe('iat', () => {
    it('refuses an iat beyond the tolerance in the future, 10 years as well as 31 s', async () => {
      for (const ahead of [10 * YEAR_S, 31]) {
        expect(await refusal(sign({ iat: NOW_S + ahead, exp: NOW_S + ahead + 60 }), jwtConfig()), `${ahead}`).toEqual({
          failure: 'unauthenticated',
          reason: AuthReason.invalid,
          detail: 'iat is in the future (beyond JWT_CLOCK_TOLERANCE_S)',
        });
      }
    });

    it('accepts an iat within the tolerance ahead (the issuer clock runs fast)', async () => {
      expect((await verify(sign({ iat: NOW_S + 30, exp: NOW_S + 90 }), jwtConfig(), NOW_MS)).ok).toBe(true);
      expect((await refusal(sign({ iat: NOW_S + 6, exp: NOW_S + 90 }), jwtConfig({ JWT_CLOCK_TOLERANCE_S: '5' }))).reason).toBe(
        AuthReason.invalid,
      );
    });

    it('refuses an iat that is not a number, and a future iat even with JWT_MAX_AGE=0', async () => {
      expect((await refusal(sign({ iat: 'yesterday', exp: NOW_S + 60 }), jwtConfig({ JWT_MAX_AGE: '0' }))).detail).toBe(
        'iat is not a number',
      );
      expect((await refusal(sign({ iat: NOW_S + YEAR_S, exp: NOW_S + 2 * YEAR_S }), jwtConfig({ JWT_MAX_AGE: '0' }))).reason).toBe(
        AuthReason.invalid,
      );
    });
  });

  describe('JWT_MAX_AGE', () => {
    it('refuses a token whose lifetime is longer, however young: exp a century away', async () => {
      expect(await refusal(sign({ iat: NOW_S, exp: NOW_S + 100 * YEAR_S }), jwtConfig())).toEqual({
        failure: 'unauthenticated',
        reason: AuthReason.invalid,
        detail: 'lifetime (exp - iat) is longer than JWT_MAX_AGE',
      });
      expect((await verify(sign({ iat: NOW_S, exp: NOW_S + 100 * YEAR_S }), jwtConfig({ JWT_MAX_AGE: '0' }), NOW_MS)).ok).toBe(true);
    });

    it('accepts a lifetime of exactly JWT_MAX_AGE and not one second more', async () => {
      const config = jwtConfig({ JWT_MAX_AGE: '1h' });
      expect((await verify(sign({ iat: NOW_S, exp: NOW_S + 3600 }), config, NOW_MS)).ok).toBe(true);
      expect((await refusal(sign({ iat: NOW_S, exp: NOW_S + 3601 }), config)).reason).toBe(AuthReason.invalid);
    });

    it('refuses a token issued longer ago than JWT_MAX_AGE (plus tolerance)', async () => {
      // Within the lifetime limit such a token is past exp + tolerance too: refused as expired.
      const config = jwtConfig({ JWT_MAX_AGE: '1h', JWT_CLOCK_TOLERANCE_S: '0' });
      expect(await refusal(sign({ iat: NOW_S - 3601, exp: NOW_S - 1 }), config)).toMatchObject({
        failure: 'expired',
        reason: AuthReason.expired,
      });
      // Still unexpired, it broke the lifetime limit.
      expect((await refusal(sign({ iat: NOW_S - 3600, exp: NOW_S + 60 }), jwtConfig({ JWT_MAX_AGE: '1200' }))).reason).toBe(
        AuthReason.invalid,
      );
      // The age rule on its own, without the library's exp check in front of it.
      const claims = { sub: 'alice', iat: NOW_S - 3631, exp: NOW_S - 31 };
      expect(checkClaims(claims, jwtConfig({ JWT_MAX_AGE: '1h' }), NOW_S)).toMatchObject({
        failure: 'expired',
        detail: 'issued longer ago than JWT_MAX_AGE',
      });
      expect(checkClaims({ ...claims, iat: NOW_S - 3630 }, jwtConfig({ JWT_MAX_AGE: '1h' }), NOW_S)).toBeUndefined();
    });

    it('requires iat while set, and not with JWT_MAX_AGE=0', async () => {
      expect((await refusal(sign({ exp: NOW_S + 60 }), jwtConfig())).detail).toBe('no iat claim (required while JWT_MAX_AGE is set)');
      expect((await verify(sign({ exp: NOW_S + 60 }), jwtConfig({ JWT_MAX_AGE: '0' }), NOW_MS)).ok).toBe(true);
    });
  });

  describe('clock tolerance', () => {
    it('applies to exp: 20 s past is still honoured (for 10 s more), 31 s past is expired', async () => {
      const recent = await verify(sign({ iat: NOW_S - 60, exp: NOW_S - 20 }), jwtConfig(), NOW_MS);
      expect(recent).toEqual({ ok: true, identity: { user: 'alice', expiresAt: NOW_MS + 10_000 } });
      expect(await refusal(sign({ iat: NOW_S - 60, exp: NOW_S - 31 }), jwtConfig())).toMatchObject({
        failure: 'expired',
        reason: AuthReason.expired,
      });
      expect((await refusal(sign({ iat: NOW_S - 60, exp: NOW_S - 1 }), jwtConfig({ JWT_CLOCK_TOLERANCE_S: '0' }))).failure).toBe('expired');
    });

    it('applies to nbf', async () => {
      expect((await verify(sign({ iat: NOW_S, nbf: NOW_S + 20, exp: NOW_S + 60 }), jwtConfig(), NOW_MS)).ok).toBe(true);
      expect(await refusal(sign({ iat: NOW_S, nbf: NOW_S + 60, exp: NOW_S + 120 }), jwtConfig())).toMatchObject({
        reason: AuthReason.invalid,
        detail: 'jwt not active',
      });
    });
  });

  describe('reasons', () => {
    it('tells the client only "invalid token", whatever check failed; the detail says which', async () => {
      const config = jwtConfig({ JWT_ISSUER: 'https://issuer.example' });
      const cases: [string, RegExp][] = [
        [
          jwt.sign({ sub: 'alice', iss: 'https://issuer.example' }, 'another-secret-0123456789-abcdefghij', { expiresIn: 60 }),
          /invalid signature/,
        ],
        [jwt.sign({ sub: 'alice', iss: 'https://issuer.example' }, SECRET, { expiresIn: 60, algorithm: 'HS512' }), /invalid algorithm/],
        [jwt.sign({ sub: 'alice', iss: 'https://other.example' }, SECRET, { expiresIn: 60 }), /jwt issuer invalid/],
        [jwt.sign({ sub: 'alice', iss: 'https://issuer.example' }, SECRET), /no exp claim/],
        ['not.a.jwt', /./],
      ];
      for (const [token, detail] of cases) {
        const refused = await refusal(token, config);
        expect(refused.reason, String(detail)).toBe(AuthReason.invalid);
        expect(refused.detail, String(detail)).toMatch(detail);
      }
    });

    it('keeps the token and its payload out of the detail', async () => {
      const payload = Buffer.from('{"sub":"alice","secret-looking":').toString('base64url');
      const header = Buffer.from('{"alg":"HS256","typ":"JWT"}').toString('base64url');
      const token = `${header}.${payload}.c2lnbmF0dXJl`;
      const refused = await refusal(token, jwtConfig());
      expect(refused.reason).toBe(AuthReason.invalid);
      expect(refused.detail).not.toMatch(/secret-looking|alice/);
      expect(refused.detail).not.toContain(payload);
      const valid = sign({ iat: NOW_S, exp: NOW_S + 100 * YEAR_S });
      expect((await refusal(valid, jwtConfig())).detail).not.toContain(valid);
    });

    it('refuses a sub that is not a user id as forbidden', async () => {
      expect(await refusal(sign({ sub: 'no spaces/allowed', iat: NOW_S, exp: NOW_S + 60 }), jwtConfig())).toMatchObject({
        failure: 'forbidden',
        reason: AuthReason.badSubject,
      });
    });
  });
});

describe('authenticateHello', () => {
  const keys = new TokenKeys(jwtConfig());

  it('verifies the hello token at the given time', async () => {
    const token = sign({ iat: NOW_S, exp: NOW_S + 60 });
    expect((await authenticateHello(token, undefined, keys, NOW_MS)).ok).toBe(true);
    expect(await authenticateHello(token, undefined, keys, NOW_MS + 200_000)).toMatchObject({ ok: false, failure: 'expired' });
    expect(await authenticateHello(token, undefined, keys, NOW_MS - 60_000)).toMatchObject({ ok: false, reason: AuthReason.invalid });
  });

  it("takes the upgrade's identity until it expires, and refuses no token at all", async () => {
    const identity = { user: 'alice', expiresAt: NOW_MS + 1_000 };
    expect(await authenticateHello(undefined, identity, keys, NOW_MS)).toEqual({ ok: true, identity });
    expect(await authenticateHello(undefined, identity, keys, NOW_MS + 1_000)).toMatchObject({ ok: false, reason: AuthReason.expired });
    expect(await authenticateHello(undefined, undefined, keys, NOW_MS)).toMatchObject({ ok: false, failure: 'unauthenticated' });
  });
});
