/** `token <user> [--ttl seconds]`: a development token signed with JWT_SECRET. Its only output is the token. */
import type { Env } from '../../config.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { signDevToken } from '../../server/auth.js';
import { usageError } from '../cli-error.js';
import { intOption, type Invocation } from '../commands.js';
import type { Output } from '../io.js';
import { loadFullConfig } from '../operator-config.js';

export async function token(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = invocation.positionals[0]!;
  if (!isValidUserId(user)) throw usageError('token: <user> must be 1-128 characters of [A-Za-z0-9._:@-]');
  const ttl = intOption(invocation, 'ttl', 3600, 1, 365 * 24 * 3600);
  const config = loadFullConfig(env);
  if (config.jwt.maxAgeS > 0 && ttl > config.jwt.maxAgeS)
    throw usageError(`token: --ttl ${ttl} is longer than JWT_MAX_AGE (${config.jwt.maxAgeS} s); the relay would refuse the token`);
  const secret = config.jwt.key;
  if (typeof secret !== 'string') throw usageError('token: minting needs JWT_SECRET (HS*); with a key pair, sign with your issuer');
  const algorithm = (config.jwt.algorithms.find((a) => a.startsWith('HS')) ?? 'HS256') as 'HS256';
  const signed = signDevToken(user, secret, {
    expiresInSeconds: ttl,
    algorithm,
    ...(config.jwt.issuer ? { issuer: config.jwt.issuer } : {}),
    ...(config.jwt.audience ? { audience: config.jwt.audience } : {}),
  });
  const expiresAt = new Date(Date.now() + ttl * 1000).toISOString();
  output.result({ user, token: signed, expiresAt }, () => [signed]);
  return 0;
}
