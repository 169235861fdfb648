/**
 * The key set file format (src/jwt-keys.ts) and the key settings of src/config.ts: what a file
 * may hold and the errors for what it may not (never quoting key material), JWT_JWKS_URL's
 * https rule, how the single key and a key set combine, and JWT_ALGORITHMS with a key set.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { algorithmsOfKey, parseKeySet } from '../../src/jwt-keys.js';
import { ecKeyPair, KeySetFile, publicJwk, randomSecret, rsaKeyPair } from '../helpers/jwt-keys.js';

const rsa = rsaKeyPair();
const ec = ecKeyPair();
const ec384 = ecKeyPair('P-384');
const secret = randomSecret();
const ALL = ['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];

function parseError(keys: unknown, allowed: string[] = ALL): string {
  try {
    parseKeySet(JSON.stringify({ keys }), allowed);
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

function configError(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    return (error as Error).message;
  }
  return 'no error';
}

const files: KeySetFile[] = [];
function keyFile(keys: ConstructorParameters<typeof KeySetFile>[0]): string {
  const file = new KeySetFile(keys);
  files.push(file);
  return file.path;
}
afterAll(() => {
  for (const file of files) file.remove();
});

describe('parseKeySet', () => {
  it('reads HS secrets, PEM public keys and public JWKs, each pinned to its alg', () => {
    const keys = parseKeySet(
      JSON.stringify({
        keys: [{ kid: 'hs', alg: 'HS384', secret }, { kid: 'rs', alg: 'PS256', publicKey: rsa.publicPem }, publicJwk(ec384, 'ec', 'ES384')],
      }),
      ALL,
    );
    expect([...keys.keys()]).toEqual(['hs', 'rs', 'ec']);
    expect([...keys.values()].map((key) => [key.kid, key.algorithms, key.key.type])).toEqual([
      ['hs', ['HS384'], 'secret'],
      ['rs', ['PS256'], 'public'],
      ['ec', ['ES384'], 'public'],
    ]);
  });

  it('refuses what would let a key verify with the wrong algorithm', () => {
    expect(parseError([{ kid: 'a', alg: 'RS256', secret }])).toBe(
      'keys[0] (kid "a"): RS256 takes a publicKey (PEM) or a JWK, not a secret',
    );
    expect(parseError([{ kid: 'a', alg: 'HS256', publicKey: rsa.publicPem }])).toBe(
      'keys[0] (kid "a"): HS256 takes a secret, not a publicKey',
    );
    expect(parseError([{ ...publicJwk(ec, 'a', undefined), alg: 'HS256' }])).toBe('keys[0] (kid "a"): HS256 takes a secret, not a JWK');
    expect(parseError([{ kid: 'a', alg: 'ES256', publicKey: rsa.publicPem }])).toBe(
      'keys[0] (kid "a"): the key does not fit ES256 (rsa key)',
    );
    expect(parseError([publicJwk(ec384, 'a', 'ES256')])).toBe('keys[0] (kid "a"): the key does not fit ES256 (ec key)');
    expect(parseError([{ kid: 'a', alg: 'none', secret }])).toBe('keys[0] (kid "a"): unsupported alg "none"');
    expect(parseError([{ kid: 'a', alg: 'HS512', secret }], ['HS256'])).toBe(
      'keys[0] (kid "a"): alg HS512 is not in JWT_ALGORITHMS (HS256)',
    );
    expect(parseError([{ kid: 'a', secret }])).toBe('keys[0] (kid "a"): needs an alg');
  });

  it('holds HS secrets to the JWT_SECRET rule and refuses private key material, never quoting it', () => {
    const weak = parseError([{ kid: 'a', alg: 'HS256', secret: 'placeholder-0123456789-abcdefghijk' }]);
    expect(weak).toBe(
      'keys[0] (kid "a"): secret looks like a placeholder (contains "placeholder"); use a random value (e.g. openssl rand -hex 32)',
    );
    expect(parseError([{ kid: 'a', alg: 'HS256', secret: 'short' }])).toBe('keys[0] (kid "a"): secret must be at least 32 characters');
    const privateJwk: Record<string, unknown> = { ...rsa.privateKey.export({ format: 'jwk' }), kid: 'a', alg: 'RS256' };
    const refused = parseError([privateJwk]);
    expect(refused).toBe('keys[0] (kid "a"): holds private key material (d, p, q, dp, dq, qi); the relay needs only the public key');
    expect(refused).not.toContain(String(privateJwk.d).slice(0, 20));
    expect(parseError([{ kid: 'a', alg: 'HS256', kty: 'oct', k: secret }])).toBe('keys[0] (kid "a"): HS256 takes a secret, not a JWK');
    expect(parseError([{ kid: 'a', alg: 'RS256', publicKey: 'not a pem' }])).toBe('keys[0] (kid "a"): publicKey is not a PEM public key');
  });

  it('checks the shape: kids present, unique and printable; known members; at least one key; valid JSON', () => {
    expect(parseError([{ alg: 'HS256', secret }])).toBe('keys[0]: needs a kid (a non-empty string)');
    expect(parseError([{ kid: 'a\nb', alg: 'HS256', secret }])).toMatch(/^keys\[0\] \(kid "a\\nb"\): kid must be 1-128 printable/);
    expect(
      parseError([
        { kid: 'a', alg: 'HS256', secret },
        { kid: 'a', alg: 'HS256', secret: randomSecret() },
      ]),
    ).toBe('keys[1] (kid "a"): the kid is listed twice');
    expect(parseError([{ kid: 'a', alg: 'HS256', secert: secret }])).toBe('keys[0] (kid "a"): unknown member "secert"');
    expect(parseError([])).toBe('lists no keys');
    expect(parseError(['a'])).toBe('keys[0]: must be an object');
    expect(() => parseKeySet('[]', ALL)).toThrow('must be a JSON object {"keys": [...]}');
    expect(() => parseKeySet(`{"keys":[{"kid":"a","alg":"HS256","secret":"${secret}"`, ALL)).toThrow(/^is not valid JSON$/);
  });

  it('knows which algorithms fit a key', () => {
    expect(algorithmsOfKey(rsa.publicKey)).toEqual(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']);
    expect(algorithmsOfKey(ec.publicKey)).toEqual(['ES256']);
    expect(algorithmsOfKey(ec384.publicKey)).toEqual(['ES384']);
    expect(algorithmsOfKey(rsa.privateKey)).toEqual([]);
  });
});

describe('key settings (loadConfig)', () => {
  it('refuses a JWKS URL that is not https, except to this machine, naming JWT_JWKS_URL', () => {
    for (const url of ['http://issuer.example/jwks.json', 'http://10.0.0.1/jwks', 'ftp://issuer.example/jwks', 'jwks.json']) {
      expect(configError({ JWT_JWKS_URL: url }), url).toMatch(/^JWT_JWKS_URL: must be an https:\/\/ URL/);
    }
    for (const url of [
      'https://issuer.example/.well-known/jwks.json',
      'http://localhost:8080/jwks',
      'http://127.0.0.1/jwks',
      'http://[::1]:9/jwks',
    ]) {
      expect(loadConfig({ JWT_JWKS_URL: url }).jwt.jwksUrl, url).toBe(url);
    }
  });

  it('needs a key: the single key, a key set, or both; not JWT_SECRET and JWT_PUBLIC_KEY_FILE together', () => {
    expect(configError({})).toMatch(/^JWT_SECRET: required \(or JWT_PUBLIC_KEY_FILE .*JWT_KEYS_FILE, JWT_JWKS_URL\)/);
    const path = keyFile([{ kid: 'a', alg: 'HS256', secret }]);
    expect(loadConfig({ JWT_KEYS_FILE: path }).jwt).toMatchObject({ key: undefined, singleKey: undefined, keysFile: path });
    const both = loadConfig({ JWT_SECRET: randomSecret(), JWT_KEYS_FILE: path, JWT_JWKS_URL: 'https://issuer.example/jwks' }).jwt;
    expect(both.singleKey?.algorithms).toEqual(['HS256']);
    expect([...(both.keySet?.keys() ?? [])]).toEqual(['a']);
    expect(configError({ JWT_SECRET: randomSecret(), JWT_PUBLIC_KEY_FILE: '/nonexistent', JWT_KEYS_FILE: path })).toMatch(
      /^JWT_SECRET: set JWT_SECRET or JWT_PUBLIC_KEY_FILE, not both/,
    );
  });

  it('names JWT_KEYS_FILE when the file is missing or bad, without key material', () => {
    expect(configError({ JWT_KEYS_FILE: '/nonexistent/keys.json' })).toBe('JWT_KEYS_FILE: cannot read /nonexistent/keys.json: ENOENT');
    const weak = 'changeme'.repeat(5);
    const message = configError({ JWT_KEYS_FILE: keyFile([{ kid: 'a', alg: 'HS256', secret: weak }]) });
    expect(message).toMatch(/^JWT_KEYS_FILE: keys\[0\] \(kid "a"\): secret is one piece repeated/);
    expect(message).not.toContain(weak);
  });

  it('defaults JWT_ALGORITHMS to HS256,RS256,ES256 with a key set, pins file keys to it, and gives the single key what fits it', () => {
    const path = keyFile([
      { kid: 'a', alg: 'HS256', secret },
      { kid: 'b', alg: 'RS256', publicKey: rsa.publicPem },
    ]);
    expect(loadConfig({ JWT_KEYS_FILE: path }).jwt.algorithms).toEqual(['HS256', 'RS256', 'ES256']);
    expect(configError({ JWT_KEYS_FILE: path, JWT_ALGORITHMS: 'HS256' })).toBe(
      'JWT_KEYS_FILE: keys[1] (kid "b"): alg RS256 is not in JWT_ALGORITHMS (HS256)',
    );
    const mixed = loadConfig({ JWT_SECRET: randomSecret(), JWT_KEYS_FILE: path, JWT_ALGORITHMS: 'HS256,HS512,RS256' }).jwt;
    expect(mixed.singleKey?.algorithms).toEqual(['HS256', 'HS512']);
    expect(configError({ JWT_SECRET: randomSecret(), JWT_JWKS_URL: 'https://issuer.example/jwks', JWT_ALGORITHMS: 'RS256' })).toMatch(
      /^JWT_ALGORITHMS: names no algorithm that fits the key of JWT_SECRET/,
    );
    // The single-key form alone keeps its rule: every algorithm must fit the key.
    expect(configError({ JWT_SECRET: randomSecret(), JWT_ALGORITHMS: 'HS256,RS256' })).toMatch(
      /^JWT_ALGORITHMS: RS256 does not fit JWT_SECRET/,
    );
  });
});
