/**
 * `presence <user>`: the user's presence as the relays keep it in Redis (src/presence/): online
 * or not, each open connection's node, since when and device label, and lastSeen once offline.
 * Read-only. A bad user id is a usage error (exit 2); no Redis configured or Redis not answering
 * is a failure (exit 1).
 */
import { errorMessage } from '../../errors.js';
import type { Env } from '../../config.js';
import { RedisPresenceStore } from '../../presence/redis-presence-store.js';
import { readPresence, type UserPresence } from '../../presence/presence-store.js';
import { isValidUserId } from '../../protocol/user-id.js';
import { failure, usageError } from '../cli-error.js';
import type { Invocation } from '../commands.js';
import type { Output } from '../io.js';
import { loadOperatorConfig } from '../operator-config.js';

const REDIS_TIMEOUT_MS = 5_000;

function lines(presence: UserPresence): string[] {
  const iso = (ms: number): string => new Date(ms).toISOString();
  if (!presence.online) {
    return [
      `${presence.user} is offline${presence.lastSeen === undefined ? ' (no lastSeen kept)' : `, last seen ${iso(presence.lastSeen)}`}`,
    ];
  }
  return [
    `${presence.user} is online with ${presence.connections.length} connection(s):`,
    ...presence.connections.map(
      (entry) =>
        `  node ${entry.node}, since ${iso(entry.since)}${entry.device === undefined ? '' : `, device ${JSON.stringify(entry.device)}`}`,
    ),
  ];
}

export async function presence(invocation: Invocation, env: Env, output: Output): Promise<number> {
  const user = invocation.positionals[0]!;
  if (!isValidUserId(user)) throw usageError('presence: <user> must be 1-128 characters of [A-Za-z0-9._:@-]');
  const config = loadOperatorConfig(env);
  if (!config.redis) throw failure("presence: neither REDIS_URL nor REDIS_SENTINELS is set: presence lives in the relays' Redis");
  const store = new RedisPresenceStore({ url: config.redis, keyPrefix: config.redisKeyPrefix, commandTimeoutMs: REDIS_TIMEOUT_MS });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${REDIS_TIMEOUT_MS} ms`)), REDIS_TIMEOUT_MS);
  });
  let found: UserPresence;
  try {
    await Promise.race([store.connect(), timeout]);
    found = await Promise.race([readPresence(store, user), timeout]);
    await store.close();
  } catch (error) {
    throw failure(`presence ${user} failed: Redis: ${errorMessage(error)}`, error);
  } finally {
    clearTimeout(timer);
    store.redis.disconnect();
  }
  output.result(found, () => lines(found));
  return 0;
}
