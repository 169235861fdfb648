/**
 * Where the relay's Redis is: one server (a `redis://` URL), or a primary that Redis Sentinel
 * names, so that a failover moves the relay to the promoted replica by itself. Both the state
 * store and the node bus connect through `createRedisClient`.
 */
import { Redis, type RedisOptions } from 'ioredis';

export interface SentinelTarget {
  /** The sentinels to ask (REDIS_SENTINELS); any one that answers is enough. */
  sentinels: { host: string; port: number }[];
  /** The master name the sentinels monitor (REDIS_SENTINEL_NAME). */
  name: string;
  /** The primary's and replicas' password (REDIS_PASSWORD), if they require one. */
  password?: string | undefined;
  /** The sentinels' own password (REDIS_SENTINEL_PASSWORD), if they require one. */
  sentinelPassword?: string | undefined;
}

/** A `redis://` or `rediss://` URL, or a Sentinel set. */
export type RedisTarget = string | SentinelTarget;

/** Redis client settings the relay relies on: fail fast, reconnect forever with capped backoff. */
export function createRedisClient(target: RedisTarget, commandTimeoutMs = 2_000): Redis {
  const common: RedisOptions = {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    commandTimeout: commandTimeoutMs,
    enableAutoPipelining: true,
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), 5_000),
  };
  if (typeof target === 'string') return new Redis(target, common);
  return new Redis({
    ...common,
    sentinels: target.sentinels,
    name: target.name,
    ...(target.password === undefined ? {} : { password: target.password }),
    ...(target.sentinelPassword === undefined ? {} : { sentinelPassword: target.sentinelPassword }),
    // A sentinel's +switch-master reconnects at once, instead of when the old primary's link fails.
    failoverDetector: true,
    // Ask the sentinels again, forever, while none answers (the default gives up after a while).
    sentinelRetryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), 5_000),
  });
}

/** Where the target is, for logs and errors: host and port only (a URL may carry a password). */
export function describeRedis(target: RedisTarget): string {
  if (typeof target === 'string') return new URL(target).host;
  return `the primary Sentinel names ${target.name} (sentinels ${target.sentinels.map(({ host, port }) => `${host}:${port}`).join(', ')})`;
}
