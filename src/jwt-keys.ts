/**
 * JWT verification keys and the key set file (JWT_KEYS_FILE). Every key is parsed once into a
 * KeyObject and carries the algorithms a token verified with it may use, so that an algorithm is
 * never chosen by the token alone: an HS* token can only meet an HMAC secret, an RS*, PS* or
 * ES* token only a public key of the matching type (and curve).
 *
 * The key set file is JSON: `{"keys": [entry, ...]}`, one entry per key, each with a unique
 * `kid` and an `alg` that JWT_ALGORITHMS names, and its key as one of:
 * - `secret`: an HMAC secret (HS* only), held to the same rule as JWT_SECRET (secret-strength.ts);
 * - `publicKey`: a PEM public key (RS*, PS*, ES*);
 * - the members of a public JWK (`kty` `RSA` or `EC`, with `n`/`e` or `crv`/`x`/`y`), as a JWKS
 *   lists them; private members (`d`, `k`, ...) are refused.
 * Errors name the entry (`keys[1] (kid "2026-12")`) and never contain key material.
 */
import { createPublicKey, createSecretKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { weakSecretReason } from './secret-strength.js';

/** Every algorithm the relay verifies; `none` is never one of them. */
export const SUPPORTED_JWT_ALGORITHMS: readonly string[] = [
  'HS256',
  'HS384',
  'HS512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
];

/** One key tokens are verified with. Never logged: only its kid is. */
export interface JwtKey {
  /** The `kid` tokens select it by; undefined for the single key (JWT_SECRET, JWT_PUBLIC_KEY_FILE). */
  readonly kid: string | undefined;
  /** The header `alg` values a token verified with this key may carry. */
  readonly algorithms: readonly string[];
  /** The HMAC secret or the public key, parsed once. */
  readonly key: KeyObject;
}

/** A key set by kid, as read from JWT_KEYS_FILE. */
export type JwtKeySet = ReadonlyMap<string, JwtKey>;

/** A key set file that cannot be used; the message never contains key material. */
export class KeySetError extends Error {
  override readonly name = 'KeySetError';
}

const EC_CURVES: Readonly<Record<string, string>> = { prime256v1: 'ES256', secp384r1: 'ES384', secp521r1: 'ES512' };

/**
 * The algorithms that can verify with `key` at all: HS* for a secret, RS* and PS* for an RSA key,
 * PS* for an RSA-PSS key, the ES* of its curve for an EC key, none for anything else.
 */
export function algorithmsOfKey(key: KeyObject): string[] {
  if (key.type === 'secret') return ['HS256', 'HS384', 'HS512'];
  if (key.type !== 'public') return [];
  const type = key.asymmetricKeyType;
  if (type === 'rsa') return ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'];
  if (type === 'rsa-pss') return ['PS256', 'PS384', 'PS512'];
  const curveAlgorithm = type === 'ec' ? EC_CURVES[key.asymmetricKeyDetails?.namedCurve ?? ''] : undefined;
  return curveAlgorithm === undefined ? [] : [curveAlgorithm];
}

/** Whether `algorithm` can verify with `key` (see {@link algorithmsOfKey}). */
export function keyFitsAlgorithm(key: KeyObject, algorithm: string): boolean {
  return algorithmsOfKey(key).includes(algorithm);
}

/** JWK members that hold private or symmetric key material: a key set file has none of them. */
const JWK_PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
/** Members of an entry that is not a JWK. */
const ENTRY_MEMBERS = new Set(['kid', 'alg', 'secret', 'publicKey']);
const MAX_KID_LENGTH = 128;

/** `keys[1] (kid "2026-12")`: how errors name an entry. */
function entryName(index: number, kid: unknown): string {
  return typeof kid === 'string' && kid !== '' ? `keys[${index}] (kid ${JSON.stringify(kid.slice(0, MAX_KID_LENGTH))})` : `keys[${index}]`;
}

function hasControlCharacter(value: string): boolean {
  return [...value].some((character) => character.charCodeAt(0) < 0x20 || character === '\x7f');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The key of one entry, of the kind its members say; throws a message without key material. */
function entryKey(entry: Record<string, unknown>, alg: string): KeyObject {
  const hmac = alg.startsWith('HS');
  if (entry.kty !== undefined) {
    if (hmac) throw new Error(`${alg} takes a secret, not a JWK`);
    const held = JWK_PRIVATE_MEMBERS.filter((member) => entry[member] !== undefined);
    if (held.length > 0) throw new Error(`holds private key material (${held.join(', ')}); the relay needs only the public key`);
    if (entry.kty !== 'RSA' && entry.kty !== 'EC') throw new Error('kty must be RSA or EC');
    try {
      return createPublicKey({ key: entry as JsonWebKey, format: 'jwk' });
    } catch {
      throw new Error('is not a valid public JWK');
    }
  }
  const unknown = Object.keys(entry).filter((member) => !ENTRY_MEMBERS.has(member));
  if (unknown.length > 0) throw new Error(`unknown member ${unknown.map((member) => JSON.stringify(member)).join(', ')}`);
  if (hmac) {
    if (entry.publicKey !== undefined) throw new Error(`${alg} takes a secret, not a publicKey`);
    if (typeof entry.secret !== 'string') throw new Error(`${alg} needs a secret (a string)`);
    const weak = weakSecretReason(entry.secret);
    if (weak !== undefined) throw new Error(`secret ${weak}`);
    return createSecretKey(Buffer.from(entry.secret));
  }
  if (entry.secret !== undefined) throw new Error(`${alg} takes a publicKey (PEM) or a JWK, not a secret`);
  if (typeof entry.publicKey !== 'string') throw new Error(`${alg} needs a publicKey (PEM) or the members of a JWK`);
  let key: KeyObject;
  try {
    key = createPublicKey(entry.publicKey);
  } catch {
    throw new Error('publicKey is not a PEM public key');
  }
  return key;
}

/** One entry, checked: kid, alg pinned by `allowed`, a key that fits the alg. */
function parseEntry(entry: unknown, allowed: readonly string[]): JwtKey {
  if (!isObject(entry)) throw new Error('must be an object');
  const { kid, alg } = entry;
  if (typeof kid !== 'string' || kid === '') throw new Error('needs a kid (a non-empty string)');
  if (kid.length > MAX_KID_LENGTH || hasControlCharacter(kid)) throw new Error(`kid must be 1-${MAX_KID_LENGTH} printable characters`);
  if (typeof alg !== 'string') throw new Error('needs an alg');
  if (!SUPPORTED_JWT_ALGORITHMS.includes(alg)) throw new Error(`unsupported alg ${JSON.stringify(alg.slice(0, 16))}`);
  if (!allowed.includes(alg)) throw new Error(`alg ${alg} is not in JWT_ALGORITHMS (${allowed.join(', ')})`);
  const key = entryKey(entry, alg);
  if (!keyFitsAlgorithm(key, alg)) throw new Error(`the key does not fit ${alg} (${key.asymmetricKeyType ?? key.type} key)`);
  return { kid, algorithms: [alg], key };
}

/**
 * Parses a key set file's text. `allowed` is JWT_ALGORITHMS: a key whose `alg` it does not name
 * is refused. Throws a {@link KeySetError} naming the first entry at fault.
 */
export function parseKeySet(text: string, allowed: readonly string[]): JwtKeySet {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    // JSON.parse quotes the text around the error, which may be a secret.
    throw new KeySetError('is not valid JSON');
  }
  if (!isObject(document) || !Array.isArray(document.keys)) throw new KeySetError('must be a JSON object {"keys": [...]}');
  if (document.keys.length === 0) throw new KeySetError('lists no keys');
  const keys = new Map<string, JwtKey>();
  for (const [index, entry] of (document.keys as unknown[]).entries()) {
    let key: JwtKey;
    try {
      key = parseEntry(entry, allowed);
    } catch (error) {
      throw new KeySetError(`${entryName(index, isObject(entry) ? entry.kid : undefined)}: ${(error as Error).message}`);
    }
    if (keys.has(key.kid!)) throw new KeySetError(`${entryName(index, key.kid)}: the kid is listed twice`);
    keys.set(key.kid!, key);
  }
  return keys;
}

/** Reads and parses a key set file (see {@link parseKeySet}); a file that cannot be read is a KeySetError too. */
export function readKeySetFile(path: string, allowed: readonly string[]): JwtKeySet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new KeySetError(`cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  return parseKeySet(text, allowed);
}
