/**
 * Key selection by kid (src/server/token-keys.ts) through verifyToken, at a fixed time: the key
 * set file (HS and RS keys, a JWK), the single key beside it for tokens without kid, algorithm
 * pinning (no key confusion), reloads that replace the set or keep it, and the JWKS path with a
 * fake source: lookups for a new kid shared between tokens, the budget for unknown kids on the
 * injected clock, kids the JWKS already served never refused for lack of budget.
 */
import { createHmac } from 'node:crypto';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { loadConfig, type JwtConfig } from '../../src/config.js';
import { verifyToken } from '../../src/server/auth.js';
import type { JwksLookup, JwksSource } from '../../src/server/jwks-source.js';
import { TokenKeys, UNKNOWN_KID_FETCHES } from '../../src/server/token-keys.js';
import { ecKeyPair, KeySetFile, publicJwk, randomSecret, rsaKeyPair, signWith } from '../helpers/jwt-keys.js';

const NOW_MS = Date.UTC(2030, 0, 1);
const rsa = rsaKeyPair();
const ec = ecKeyPair();
const oldSecret = randomSecret();
const newSecret = randomSecret();
const singleSecret = randomSecret();

const files: KeySetFile[] = [];
function keyFile(keys: ConstructorParameters<typeof KeySetFile>[0]): KeySetFile {
  const file = new KeySetFile(keys);
  files.push(file);
  return file;
}
afterAll(() => {
  for (const file of files) file.remove();
});

function jwtConfig(env: Record<string, string>): JwtConfig {
  return loadConfig(env).jwt;
}

async function outcome(keys: TokenKeys, token: string, now = NOW_MS): Promise<string> {
  const result = await verifyToken(token, keys, now);
  return result.ok ? `ok ${result.identity.user}` : `${result.reason}: ${result.detail}`;
}

/** A JWKS that answers from `keys` and counts the lookups it was asked. */
class FakeJwks implements JwksSource {
  readonly asked: string[] = [];
  keys = new Map<string, { alg: string | undefined; pem: string }>();
  /** While set, lookups wait for it. */
  gate: Promise<void> | undefined;

  async lookup(kid: string): Promise<JwksLookup> {
    this.asked.push(kid);
    await this.gate;
    const key = this.keys.get(kid);
    if (!key) return { found: false, why: 'absent', detail: 'the JWKS does not list it' };
    return { found: true, kid, alg: key.alg, publicKeyPem: key.pem };
  }
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(NOW_MS);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('a key set file', () => {
  const file = keyFile([
    { kid: '2026-11', alg: 'HS256', secret: oldSecret },
    { kid: '2026-12', alg: 'RS256', publicKey: rsa.publicPem },
    publicJwk(ec, '2026-12-ec', 'ES256'),
  ]);
  const keys = new TokenKeys(jwtConfig({ JWT_KEYS_FILE: file.path }));

  it('verifies each token with the key its kid names: HS secret, PEM public key, JWK', async () => {
    expect(await outcome(keys, signWith('alice', oldSecret, { kid: '2026-11' }))).toBe('ok alice');
    expect(await outcome(keys, signWith('bob', rsa.privateKey, { kid: '2026-12' }))).toBe('ok bob');
    expect(await outcome(keys, signWith('carol', ec.privateKey, { kid: '2026-12-ec', algorithm: 'ES256' }))).toBe('ok carol');
  });

  it('refuses an unknown kid as an invalid token, naming the kid in the detail only', async () => {
    expect(await outcome(keys, signWith('alice', oldSecret, { kid: '2027-01' }))).toBe(
      'invalid token: unknown kid "2027-01": not in JWT_KEYS_FILE',
    );
    const long = signWith('alice', oldSecret, { kid: 'k'.repeat(500) });
    expect(await outcome(keys, long)).toBe(`invalid token: unknown kid "${'k'.repeat(64)}...": not in JWT_KEYS_FILE`);
  });

  it('refuses a token signed with another key under a known kid, and a token without kid', async () => {
    expect(await outcome(keys, signWith('alice', newSecret, { kid: '2026-11' }))).toBe('invalid token: invalid signature');
    expect(await outcome(keys, signWith('alice', oldSecret))).toMatch(/^invalid token: the token has no kid header/);
  });

  it("pins each key's alg: another HS alg, or an HS token whose secret is the public key's text, is refused", async () => {
    expect(await outcome(keys, signWith('alice', oldSecret, { kid: '2026-11', algorithm: 'HS512' }))).toBe(
      'invalid token: invalid algorithm',
    );
    // Key confusion: the attacker knows the public key and signs HS256 with its PEM as the secret.
    const confused = signWith('mallory', rsa.publicPem, { kid: '2026-12', algorithm: 'HS256' });
    expect(await outcome(keys, confused)).toBe('invalid token: invalid algorithm');
    const confusedJwk = signWith('mallory', JSON.stringify(publicJwk(ec, '2026-12-ec', 'ES256')), { kid: '2026-12-ec' });
    expect(await outcome(keys, confusedJwk)).toBe('invalid token: invalid algorithm');
    // The RS key with an RS alg other than its own.
    expect(await outcome(keys, signWith('alice', rsa.privateKey, { kid: '2026-12', algorithm: 'RS512' }))).toBe(
      'invalid token: invalid algorithm',
    );
  });

  it('refuses a kid that is not a string, and a header that is not JSON', async () => {
    const header = Buffer.from(JSON.stringify({ alg: 'HS256', kid: 7 })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ sub: 'alice', exp: NOW_MS / 1000 + 60 })).toString('base64url');
    const signature = createHmac('sha256', oldSecret).update(`${header}.${body}`).digest('base64url');
    expect(await outcome(keys, `${header}.${body}.${signature}`)).toBe('invalid token: kid is not a string');
    expect(await outcome(keys, `bm90IGpzb24.${body}.${signature}`)).toBe('invalid token: jwt malformed');
  });
});

describe('the single key beside a key set', () => {
  const file = keyFile([{ kid: '2026-12', alg: 'HS256', secret: newSecret }]);

  it('verifies tokens without kid; a token with a kid never falls back to it', async () => {
    const keys = new TokenKeys(jwtConfig({ JWT_SECRET: singleSecret, JWT_KEYS_FILE: file.path }));
    expect(await outcome(keys, signWith('alice', singleSecret))).toBe('ok alice');
    expect(await outcome(keys, signWith('alice', newSecret, { kid: '2026-12' }))).toBe('ok alice');
    expect(await outcome(keys, signWith('alice', singleSecret, { kid: 'legacy' }))).toBe(
      'invalid token: unknown kid "legacy": not in JWT_KEYS_FILE',
    );
    expect(await outcome(keys, signWith('alice', newSecret))).toBe('invalid token: invalid signature');
  });

  it('without a key set, verifies every token, with a kid or not (as before key sets)', async () => {
    const keys = new TokenKeys(jwtConfig({ JWT_SECRET: singleSecret }));
    expect(await outcome(keys, signWith('alice', singleSecret, { kid: 'whatever' }))).toBe('ok alice');
    expect(await outcome(keys, signWith('alice', singleSecret))).toBe('ok alice');
  });
});

describe('reloading the key set file', () => {
  it('replaces the set with a good file, and keeps it when the new file is bad', async () => {
    const file = keyFile([{ kid: '2026-11', alg: 'HS256', secret: oldSecret }]);
    const keys = new TokenKeys(jwtConfig({ JWT_KEYS_FILE: file.path }));
    const oldToken = signWith('alice', oldSecret, { kid: '2026-11' });
    const newToken = signWith('alice', newSecret, { kid: '2026-12' });
    expect(await outcome(keys, newToken)).toMatch(/unknown kid "2026-12"/);

    // Overlap: both kids.
    file.write([
      { kid: '2026-11', alg: 'HS256', secret: oldSecret },
      { kid: '2026-12', alg: 'HS256', secret: newSecret },
    ]);
    expect(keys.reloadKeysFile()).toEqual({ outcome: 'reloaded', file: file.path, kids: ['2026-11', '2026-12'] });
    expect([await outcome(keys, oldToken), await outcome(keys, newToken)]).toEqual(['ok alice', 'ok alice']);

    // Bad files: each keeps both kids, and the error holds no key material.
    const weak = 'changeme'.repeat(5);
    for (const [text, error] of [
      [`{"keys":[{"kid":"2026-12","alg":"HS256","secret":"${newSecret}"`, 'is not valid JSON'],
      [JSON.stringify({ keys: [{ kid: '2026-12', alg: 'HS256', secret: weak }] }), 'keys[0] (kid "2026-12"): secret is one piece repeated'],
      [JSON.stringify({ keys: [{ kid: '2026-12', alg: 'HS512', secret: newSecret }] }), 'keys[0] (kid "2026-12"): alg HS512 is not in'],
      [JSON.stringify({ keys: [] }), 'lists no keys'],
    ] as const) {
      file.writeText(text);
      const reload = keys.reloadKeysFile();
      expect(reload, error).toMatchObject({ outcome: 'failed', keptKids: ['2026-11', '2026-12'] });
      const message = reload.outcome === 'failed' ? reload.error : '';
      expect(message).toContain(error);
      expect(message).not.toContain(newSecret.slice(0, 16));
      expect(message).not.toContain('changeme');
      expect(await outcome(keys, newToken)).toBe('ok alice');
    }

    // Revocation: the old kid removed.
    file.write([{ kid: '2026-12', alg: 'HS256', secret: newSecret }]);
    expect(keys.reloadKeysFile()).toMatchObject({ outcome: 'reloaded', kids: ['2026-12'] });
    expect(await outcome(keys, oldToken)).toMatch(/^invalid token: unknown kid "2026-11"/);
    expect(await outcome(keys, newToken)).toBe('ok alice');
  });

  it('reports a missing file as failed and has nothing to reload without JWT_KEYS_FILE', () => {
    const file = keyFile([{ kid: '2026-11', alg: 'HS256', secret: oldSecret }]);
    const keys = new TokenKeys(jwtConfig({ JWT_KEYS_FILE: file.path }));
    file.remove();
    expect(keys.reloadKeysFile()).toMatchObject({
      outcome: 'failed',
      error: expect.stringMatching(/cannot read .*ENOENT/),
      keptKids: ['2026-11'],
    });
    expect(new TokenKeys(jwtConfig({ JWT_SECRET: singleSecret })).reloadKeysFile()).toEqual({ outcome: 'no-file' });
  });
});

describe('a JWKS (fake source)', () => {
  const JWKS_ENV = { JWT_JWKS_URL: 'https://issuer.example/.well-known/jwks.json', JWT_ALGORITHMS: 'RS256,ES256' };

  function jwksKeys(jwks: FakeJwks, env: Record<string, string> = {}): TokenKeys {
    return new TokenKeys(jwtConfig({ ...JWKS_ENV, ...env }), { jwks, now: NOW_MS });
  }

  it('picks up a key added to the JWKS: the kid not held makes it ask, and the answer is used', async () => {
    const jwks = new FakeJwks();
    const keys = jwksKeys(jwks);
    const token = signWith('alice', rsa.privateKey, { kid: 'rsa-1' });
    expect(await outcome(keys, token)).toBe('invalid token: unknown kid "rsa-1": the JWKS does not list it');
    jwks.keys.set('rsa-1', { alg: 'RS256', pem: rsa.publicPem });
    expect(await outcome(keys, token)).toBe('ok alice');
    expect(jwks.asked).toEqual(['rsa-1', 'rsa-1']);
  });

  it('asks once for many tokens that wait for the same new kid', async () => {
    const jwks = new FakeJwks();
    jwks.keys.set('rsa-1', { alg: 'RS256', pem: rsa.publicPem });
    let open = (): void => undefined;
    jwks.gate = new Promise((resolve) => (open = resolve));
    const keys = jwksKeys(jwks);
    const waiting = Array.from({ length: 20 }, (_, i) => outcome(keys, signWith(`user-${i}`, rsa.privateKey, { kid: 'rsa-1' })));
    open();
    expect(await Promise.all(waiting)).toEqual(Array.from({ length: 20 }, (_, i) => `ok user-${i}`));
    expect(jwks.asked).toEqual(['rsa-1']);
  });

  it('asks for unknown kids within a budget on the clock, and never charges kids it served', async () => {
    const jwks = new FakeJwks();
    jwks.keys.set('rsa-1', { alg: 'RS256', pem: rsa.publicPem });
    const keys = jwksKeys(jwks);
    const good = signWith('alice', rsa.privateKey, { kid: 'rsa-1' });
    expect(await outcome(keys, good)).toBe('ok alice');
    const forged = (i: number): string => signWith('mallory', rsa.privateKey, { kid: `forged-${i}` });
    // The first lookup (rsa-1, then unknown) took one of the burst.
    for (let i = 1; i < UNKNOWN_KID_FETCHES.burst; i += 1) expect(await outcome(keys, forged(i))).toMatch(/the JWKS does not list it$/);
    const asked = jwks.asked.length;
    expect(await outcome(keys, forged(99))).toMatch(/the JWKS was asked for unknown kids too often$/);
    expect(jwks.asked.length).toBe(asked);
    // A kid the JWKS served is still looked up (its cache entry may have expired).
    expect(await outcome(keys, good)).toBe('ok alice');
    expect(jwks.asked.length).toBe(asked + 1);
    // One more unknown kid after 60 / perMinute seconds, not before.
    const refillMs = (60 / UNKNOWN_KID_FETCHES.perMinute) * 1000;
    expect(await outcome(keys, forged(100), NOW_MS + refillMs - 1_000)).toMatch(/too often$/);
    expect(await outcome(keys, forged(101), NOW_MS + refillMs + 1_000)).toMatch(/the JWKS does not list it$/);
  });

  it('refuses a kid the JWKS dropped, and one whose key the lookup cannot reach', async () => {
    const jwks = new FakeJwks();
    jwks.keys.set('rsa-1', { alg: 'RS256', pem: rsa.publicPem });
    const keys = jwksKeys(jwks);
    const token = signWith('alice', rsa.privateKey, { kid: 'rsa-1' });
    expect(await outcome(keys, token)).toBe('ok alice');
    jwks.keys.delete('rsa-1');
    expect(await outcome(keys, token)).toBe('invalid token: unknown kid "rsa-1": the JWKS does not list it');
    const down: JwksSource = {
      lookup: () => Promise.resolve({ found: false, why: 'unavailable', detail: 'JWKS request failed (ECONNREFUSED)' }),
    };
    const unreachable = new TokenKeys(jwtConfig(JWKS_ENV), { jwks: down, now: NOW_MS });
    expect(await outcome(unreachable, token)).toBe('invalid token: kid "rsa-1": JWKS request failed (ECONNREFUSED)');
  });

  it("pins JWKS keys too: the JWK's alg, or without one the JWT_ALGORITHMS that fit its type", async () => {
    const jwks = new FakeJwks();
    jwks.keys.set('rsa-no-alg', { alg: undefined, pem: rsa.publicPem });
    jwks.keys.set('ec-no-alg', { alg: undefined, pem: ec.publicPem });
    jwks.keys.set('rsa-384', { alg: 'RS384', pem: rsa.publicPem });
    const keys = jwksKeys(jwks);
    expect(await outcome(keys, signWith('alice', rsa.privateKey, { kid: 'rsa-no-alg' }))).toBe('ok alice');
    expect(await outcome(keys, signWith('alice', ec.privateKey, { kid: 'ec-no-alg', algorithm: 'ES256' }))).toBe('ok alice');
    // RS512 fits an RSA key but JWT_ALGORITHMS does not name it; ES256 with an RSA key does not fit.
    expect(await outcome(keys, signWith('alice', rsa.privateKey, { kid: 'rsa-no-alg', algorithm: 'RS512' }))).toBe(
      'invalid token: invalid algorithm',
    );
    expect(await outcome(keys, signWith('alice', ec.privateKey, { kid: 'rsa-no-alg', algorithm: 'ES256' }))).toBe(
      'invalid token: invalid algorithm',
    );
    expect(await outcome(keys, signWith('mallory', rsa.publicPem, { kid: 'rsa-no-alg', algorithm: 'HS256' }))).toBe(
      'invalid token: invalid algorithm',
    );
    expect(await outcome(keys, signWith('alice', rsa.privateKey, { kid: 'rsa-384', algorithm: 'RS384' }))).toMatch(
      /^invalid token: kid "rsa-384": the JWKS key's alg "RS384" is not in JWT_ALGORITHMS/,
    );
  });

  it('takes the key set file first, then the JWKS', async () => {
    const file = keyFile([{ kid: 'shared', alg: 'HS256', secret: newSecret }]);
    const jwks = new FakeJwks();
    jwks.keys.set('shared', { alg: 'RS256', pem: rsa.publicPem });
    jwks.keys.set('rsa-1', { alg: 'RS256', pem: rsa.publicPem });
    const keys = jwksKeys(jwks, { JWT_KEYS_FILE: file.path, JWT_ALGORITHMS: 'HS256,RS256' });
    expect(await outcome(keys, signWith('alice', newSecret, { kid: 'shared' }))).toBe('ok alice');
    expect(await outcome(keys, signWith('alice', rsa.privateKey, { kid: 'shared' }))).toBe('invalid token: invalid algorithm');
    expect(await outcome(keys, signWith('alice', rsa.privateKey, { kid: 'rsa-1' }))).toBe('ok alice');
    expect(jwks.asked).toEqual(['rsa-1']);
  });
});
