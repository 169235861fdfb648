/** Removes the keys a relay child wrote under this run's REDIS_KEY_PREFIX. */
import { Redis } from 'ioredis';

export async function deleteRedisPrefix(url: string, prefix: string, timeoutMs = 30_000): Promise<number> {
  if (!/^bench-[A-Za-z0-9-]*/.test(prefix)) throw new Error(`refusing to delete keys under an unexpected prefix ${prefix}`);
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const deadline = Date.now() + timeoutMs;
  let cursor = '0';
  let deleted = 0;
  try {
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 2_000);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys);
    } while (cursor !== '0' && Date.now() < deadline);
  } finally {
    redis.disconnect();
  }
  return deleted;
}
