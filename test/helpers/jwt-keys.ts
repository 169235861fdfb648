/**
 * Keys, key set files and tokens for the key rotation tests: HMAC secrets that pass the secret
 * floor, RSA and EC key pairs (generated once per test file), key set files in a private
 * temporary directory, and tokens signed with a kid.
 */
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';

/** A random HMAC secret (64 hex characters): passes secret-strength.ts. */
export function randomSecret(): string {
  return randomBytes(32).toString('hex');
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** The public key as PEM (SPKI), as a key set file or a JWKS holds it. */
  publicPem: string;
}

function pair(generated: { privateKey: KeyObject; publicKey: KeyObject }): KeyPair {
  return { ...generated, publicPem: generated.publicKey.export({ format: 'pem', type: 'spki' }).toString() };
}

export function rsaKeyPair(): KeyPair {
  return pair(generateKeyPairSync('rsa', { modulusLength: 2048 }));
}

export function ecKeyPair(curve: 'P-256' | 'P-384' = 'P-256'): KeyPair {
  return pair(generateKeyPairSync('ec', { namedCurve: curve }));
}

/** The public key as a JWK with `kid` (and `alg` unless undefined), as a JWKS lists it. */
export function publicJwk(keyPair: KeyPair, kid: string, alg: string | undefined): Record<string, unknown> {
  const jwk = keyPair.publicKey.export({ format: 'jwk' }) as Record<string, unknown>;
  return { ...jwk, kid, use: 'sig', ...(alg === undefined ? {} : { alg }) };
}

export type KeyEntry =
  { kid: string; alg: string; secret: string } | { kid: string; alg: string; publicKey: string } | Record<string, unknown>;

/** A key set file in a temporary directory; `write` replaces it atomically (rename), as an operator's tooling should. */
export class KeySetFile {
  readonly dir = mkdtempSync(join(tmpdir(), 'inbox-relay-keys-'));
  readonly path = join(this.dir, 'keys.json');

  constructor(keys: KeyEntry[]) {
    this.write(keys);
  }

  write(keys: KeyEntry[]): void {
    this.writeText(JSON.stringify({ keys }, null, 2));
  }

  writeText(text: string): void {
    const next = `${this.path}.next`;
    writeFileSync(next, text);
    renameSync(next, this.path);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface SignOptions {
  kid?: string;
  algorithm?: jwt.Algorithm;
  expiresInSeconds?: number;
  /** Claims besides `sub`, `iat` and `exp`. */
  claims?: Record<string, unknown>;
}

/** A token for `user` signed with `key` (a secret string or a private key), with `kid` in its header when given. */
export function signWith(user: string, key: string | KeyObject, options: SignOptions = {}): string {
  return jwt.sign({ sub: user, ...options.claims }, key, {
    algorithm: options.algorithm ?? (typeof key === 'string' ? 'HS256' : 'RS256'),
    expiresIn: options.expiresInSeconds ?? 600,
    ...(options.kid === undefined ? {} : { keyid: options.kid }),
  });
}
