/**
 * Where the relay's Redis is: one server (a `redis://` URL), or a primary that Redis Sentinel
 * names, so that a failover moves the relay to the promoted replica by itself. Both the state
 * store and the node bus connect through `createRedisClient`.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { ErrorCode, RelayError } from '../errors.js';

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

/**
 * Asks the sentinels whether they monitor `target.name`, so that a wrong name is a clear error at
 * start (ioredis would retry it forever). Resolves once one sentinel names a primary; throws a
 * RelayError naming REDIS_SENTINEL_NAME when every sentinel that answered knows no such master,
 * and one naming REDIS_SENTINELS when none answered.
 */
export async function checkSentinelMaster(target: SentinelTarget, timeoutMs = 3_000): Promise<void> {
  const unknown: string[] = [];
  const unreachable: string[] = [];
  for (const { host, port } of target.sentinels) {
    const where = `${host}:${port}`;
    const sentinel = new Redis({
      host,
      port,
      lazyConnect: true,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      ...(target.sentinelPassword === undefined ? {} : { password: target.sentinelPassword }),
    });
    sentinel.on('error', () => undefined);
    try {
      await sentinel.connect();
      const primary = await sentinel.call('SENTINEL', 'get-master-addr-by-name', target.name);
      if (Array.isArray(primary)) return;
      unknown.push(where);
    } catch (error) {
      unreachable.push(`${where} (${error instanceof Error ? error.message : String(error)})`);
    } finally {
      sentinel.disconnect();
    }
  }
  if (unknown.length > 0) {
    throw new RelayError(
      ErrorCode.config,
      `REDIS_SENTINEL_NAME: no sentinel monitors a master named "${target.name}" (asked ${unknown.join(', ')})`,
    );
  }
  throw new RelayError(ErrorCode.storeUnavailable, `REDIS_SENTINELS: no sentinel answered: ${unreachable.join('; ')}`, { retryable: true });
}
