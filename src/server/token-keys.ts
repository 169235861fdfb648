/**
 * Which key verifies a token, chosen by the `kid` of its header among the single key
 * (JWT_SECRET or JWT_PUBLIC_KEY_FILE), the key set file (JWT_KEYS_FILE) and the JWKS
 * (JWT_JWKS_URL); docs/PROTOCOL.md 3.2. The rules:
 * - no key set configured: the single key verifies every token, with a kid or not (as before);
 * - a token without a kid: the single key; refused when there is none;
 * - a token with a kid: the key set file's key with that kid, else the JWKS's (fetched when not
 *   cached); the single key never verifies a token with a kid beside a key set.
 * A key comes with the algorithms a token verified with it may carry (its own `alg`), always
 * within JWT_ALGORITHMS.
 *
 * Reloading the file (`reloadKeysFile`, on SIGHUP) replaces the set with one assignment: a
 * verification sees the old set or the new one, never a mix, and a file that does not parse
 * leaves the old set in place. Nothing here closes a connection: a token already accepted stays
 * accepted until its `exp`, whatever happens to its key.
 *
 * A forged token can name any kid, and a kid the relay does not hold makes it ask the JWKS: such
 * requests are shared between tokens that wait for the same kid and limited to
 * {@link UNKNOWN_KID_FETCHES}, below jwks-rsa's own request limit, so that kids the JWKS already
 * served (whose cache entries expire and are fetched again) always have requests left.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import type { JwtConfig } from '../config.js';
import { algorithmsOfKey, readKeySetFile, type JwtKey, type JwtKeySet } from '../jwt-keys.js';
import type { Logger } from '../log.js';
import { TokenBucket } from '../overload/token-bucket.js';
import { jwksRsaSource, type JwksLookup, type JwksSource } from './jwks-source.js';

/** JWKS requests for kids it never served: `perMinute` on average, at most `burst` at once. */
export const UNKNOWN_KID_FETCHES = { perMinute: 5, burst: 5 } as const;

/** How many characters of an unknown kid the debug log shows. */
const KID_SHOWN = 64;

export type KeySelection = { ok: true; key: JwtKey } | { ok: false; detail: string };

/** What a reload of the key set file did. Kids only: never key material. */
export type KeyReload =
  | { outcome: 'reloaded'; file: string; kids: string[] }
  | { outcome: 'failed'; file: string; error: string; keptKids: string[] }
  | { outcome: 'no-file' };

export interface TokenKeysOptions {
  /** The JWKS to ask (default: jwks-rsa on JWT_JWKS_URL when it is set). */
  jwks?: JwksSource;
  /** Where a key picked up from the JWKS is reported (info). */
  logger?: Logger;
  /** Start of the unknown-kid request budget (ms; the system clock by default). */
  now?: number;
}

/** A kid as the debug log shows it: quoted, cut, so a forged header cannot flood the log. */
export function shownKid(kid: string): string {
  return JSON.stringify(kid.length > KID_SHOWN ? `${kid.slice(0, KID_SHOWN)}...` : kid);
}

const refuse = (detail: string): KeySelection => ({ ok: false, detail });

interface JwksEntry {
  pem: string;
  selection: KeySelection;
}

export class TokenKeys {
  private fileKeys: JwtKeySet | undefined;
  private readonly jwks: JwksSource | undefined;
  /** Kids the JWKS served, with their key parsed once per PEM. */
  private readonly jwksKeys = new Map<string, JwksEntry>();
  /** JWKS lookups under way, by kid: tokens waiting for the same kid share one. */
  private readonly pending = new Map<string, Promise<KeySelection>>();
  private readonly unknownKidFetches: TokenBucket;

  constructor(
    readonly config: JwtConfig,
    private readonly options: TokenKeysOptions = {},
  ) {
    this.fileKeys = config.keySet;
    this.jwks = options.jwks ?? (config.jwksUrl === undefined ? undefined : jwksRsaSource(config.jwksUrl));
    this.unknownKidFetches = new TokenBucket(UNKNOWN_KID_FETCHES.perMinute / 60, UNKNOWN_KID_FETCHES.burst, options.now ?? Date.now());
  }

  /** Whether a key set (file or JWKS) is configured: tokens are then selected by kid. */
  get selectsByKid(): boolean {
    return this.config.keysFile !== undefined || this.jwks !== undefined;
  }

  /** The kids of the key set file now in use. */
  get fileKids(): string[] {
    return [...(this.fileKeys?.keys() ?? [])];
  }

  /** The key for a token whose header names `kid` (undefined: none), at `nowMs`. */
  async select(kid: string | undefined, nowMs: number): Promise<KeySelection> {
    const { singleKey } = this.config;
    if (!this.selectsByKid || kid === undefined) {
      if (singleKey) return { ok: true, key: singleKey };
      return refuse('the token has no kid header; only JWT_SECRET or JWT_PUBLIC_KEY_FILE verify tokens without one');
    }
    const fromFile = this.fileKeys?.get(kid);
    if (fromFile) return { ok: true, key: fromFile };
    if (!this.jwks) return refuse(`unknown kid ${shownKid(kid)}: not in JWT_KEYS_FILE`);
    return this.fromJwks(this.jwks, kid, nowMs);
  }

  /**
   * Reads JWT_KEYS_FILE again with the rules of the start (secrets, algorithms). A good file
   * replaces the set at once; a bad one changes nothing.
   */
  reloadKeysFile(): KeyReload {
    const file = this.config.keysFile;
    if (file === undefined) return { outcome: 'no-file' };
    let keys: JwtKeySet;
    try {
      keys = readKeySetFile(file, this.config.algorithms);
    } catch (error) {
      return { outcome: 'failed', file, error: (error as Error).message, keptKids: this.fileKids };
    }
    this.fileKeys = keys;
    return { outcome: 'reloaded', file, kids: this.fileKids };
  }

  private fromJwks(jwks: JwksSource, kid: string, nowMs: number): Promise<KeySelection> {
    const pending = this.pending.get(kid);
    if (pending) return pending;
    if (!this.jwksKeys.has(kid) && !this.unknownKidFetches.take(nowMs)) {
      return Promise.resolve(refuse(`unknown kid ${shownKid(kid)}: not in the key set, and the JWKS was asked for unknown kids too often`));
    }
    const lookup = jwks
      .lookup(kid)
      .then(
        (found) => this.fromLookup(kid, found),
        // A source that breaks its contract (lookups resolve) still refuses, never throws.
        (error: unknown) => refuse(`kid ${shownKid(kid)}: JWKS lookup failed (${error instanceof Error ? error.name : 'error'})`),
      )
      .finally(() => this.pending.delete(kid));
    this.pending.set(kid, lookup);
    return lookup;
  }

  private fromLookup(kid: string, found: JwksLookup): KeySelection {
    if (!found.found) {
      if (found.why === 'absent') this.jwksKeys.delete(kid);
      return refuse(`${found.why === 'unavailable' ? 'kid' : 'unknown kid'} ${shownKid(kid)}: ${found.detail}`);
    }
    const known = this.jwksKeys.get(kid);
    if (known?.pem === found.publicKeyPem) return known.selection;
    const selection = this.jwksSelection(kid, found.alg, found.publicKeyPem);
    this.jwksKeys.set(kid, { pem: found.publicKeyPem, selection });
    if (selection.ok) this.options.logger?.info({ kid, algorithms: selection.key.algorithms }, 'JWT key picked up from the JWKS');
    else this.options.logger?.warn({ kid, detail: selection.detail }, 'JWT key in the JWKS not usable');
    return selection;
  }

  /** A JWKS key with its algorithms: its `alg` when it has one, else those of JWT_ALGORITHMS that fit its type. */
  private jwksSelection(kid: string, alg: string | undefined, pem: string): KeySelection {
    const shown = shownKid(kid);
    let key: KeyObject;
    try {
      key = createPublicKey(pem);
    } catch {
      return refuse(`kid ${shown}: the JWKS key is not a public key`);
    }
    const fitting = algorithmsOfKey(key).filter((algorithm) => this.config.algorithms.includes(algorithm));
    if (alg !== undefined && !fitting.includes(alg)) {
      return refuse(
        `kid ${shown}: the JWKS key's alg ${JSON.stringify(alg.slice(0, 16))} is not in JWT_ALGORITHMS or does not fit the key`,
      );
    }
    const algorithms = alg === undefined ? fitting : [alg];
    if (algorithms.length === 0) return refuse(`kid ${shown}: no algorithm of JWT_ALGORITHMS fits the JWKS key`);
    return { ok: true, key: { kid, algorithms, key } };
  }
}
