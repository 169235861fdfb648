/**
 * `token <user> [--ttl seconds] [--kid kid]`: a development token, signed with JWT_SECRET, or with
 * the HS* key `kid` of JWT_KEYS_FILE (its header then names the kid, so a relay with that key set
 * selects the key). Its only output is the token.
 */
import type { KeyObject } from 'node:crypto';
import type { Env, JwtConfig } from '../../config.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { signDevToken } from '../../server/auth.js';
import { usageError } from '../cli-error.js';
import { intOption, type Invocation } from '../commands.js';
import type { Output } from '../io.js';
import { loadFullConfig } from '../operator-config.js';

interface SigningKey {
  secret: string | KeyObject;
  algorithm: 'HS256' | 'HS384' | 'HS512';
  kid: string | undefined;
}

/** The key `--kid` names in JWT_KEYS_FILE, or JWT_SECRET without it; only HMAC keys can sign here. */
function signingKey(jwt: JwtConfig, kid: string | undefined): SigningKey {
  if (kid === undefined) {
    if (typeof jwt.key !== 'string') {
      throw usageError(
        'token: minting needs JWT_SECRET (HS*), or --kid <kid> of an HS* key in JWT_KEYS_FILE; with a key pair, sign with your issuer',
      );
    }
    const algorithm = (jwt.singleKey?.algorithms.find((a) => a.startsWith('HS')) ?? 'HS256') as SigningKey['algorithm'];
    return { secret: jwt.key, algorithm, kid: undefined };
  }
  if (jwt.keySet === undefined) throw usageError('token: --kid needs JWT_KEYS_FILE (the key set that holds the kid)');
  const key = jwt.keySet.get(kid);
  if (key === undefined)
    throw usageError(`token: JWT_KEYS_FILE has no key with kid ${JSON.stringify(kid)} (it has: ${[...jwt.keySet.keys()].join(', ')})`);
  const algorithm = key.algorithms[0] ?? '';
  if (!algorithm.startsWith('HS')) {
    throw usageError(`token: key ${JSON.stringify(kid)} is ${algorithm}; the CLI signs only with HS* keys (it holds no private keys)`);
  }
  return { secret: key.key, algorithm: algorithm as SigningKey['algorithm'], kid };
}

export async function token(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = invocation.positionals[0]!;
  if (!isValidUserId(user)) throw usageError('token: <user> must be 1-128 characters of [A-Za-z0-9._:@-]');
  const ttl = intOption(invocation, 'ttl', 3600, 1, 365 * 24 * 3600);
  const kid = invocation.values.kid;
  if (kid !== undefined && (typeof kid !== 'string' || kid === '')) throw usageError('token: --kid needs a kid');
  const config = loadFullConfig(env);
  if (config.jwt.maxAgeS > 0 && ttl > config.jwt.maxAgeS)
    throw usageError(`token: --ttl ${ttl} is longer than JWT_MAX_AGE (${config.jwt.maxAgeS} s); the relay would refuse the token`);
  const key = signingKey(config.jwt, kid);
  const signed = signDevToken(user, key.secret, {
    expiresInSeconds: ttl,
    algorithm: key.algorithm,
    ...(key.kid === undefined ? {} : { keyId: key.kid }),
    ...(config.jwt.issuer ? { issuer: config.jwt.issuer } : {}),
    ...(config.jwt.audience ? { audience: config.jwt.audience } : {}),
  });
  const expiresAt = new Date(Date.now() + ttl * 1000).toISOString();
  output.result({ user, token: signed, expiresAt, ...(key.kid === undefined ? {} : { kid: key.kid }) }, () => [signed]);
  return 0;
}
