/**
 * `npm run token -- <userId> [ttlSeconds]`: prints a development token signed with JWT_SECRET
 * (HS256), so that any WebSocket client can connect. Not for production key management.
 */
import { loadConfig } from '../config.js';
import { errorMessage } from '../errors.js';
import { isValidUserId } from '../protocol/user-id.js';
import { signDevToken } from '../server/auth.js';

const [user, ttl] = process.argv.slice(2);
try {
  if (!user || !isValidUserId(user)) throw new Error('usage: npm run token -- <userId> [ttlSeconds]  (user id: 1-128 of [A-Za-z0-9._:@-])');
  const config = loadConfig(process.env);
  const secret = config.jwt.key;
  if (typeof secret !== 'string') throw new Error('token minting needs JWT_SECRET (HS256); with a key pair, sign with your issuer');
  const algorithm = (config.jwt.algorithms.find((a) => a.startsWith('HS')) ?? 'HS256') as 'HS256';
  process.stdout.write(
    `${signDevToken(user, secret, {
      expiresInSeconds: ttl ? Number(ttl) : 3600,
      algorithm,
      ...(config.jwt.issuer ? { issuer: config.jwt.issuer } : {}),
      ...(config.jwt.audience ? { audience: config.jwt.audience } : {}),
    })}\n`,
  );
} catch (error) {
  process.stderr.write(`inbox-relay token: ${errorMessage(error)}\n`);
  process.exit(2);
}
