/**
 * The broker and Redis settings that name several servers: RABBITMQ_URL as a comma-separated
 * list of cluster nodes, and REDIS_SENTINELS / REDIS_SENTINEL_NAME instead of REDIS_URL. Each
 * error names the variable (and the entry) at fault.
 */
import { ErrorCode, RelayError } from './errors.js';
import type { RedisTarget } from './store/redis-target.js';

type Env = Readonly<Record<string, string | undefined>>;

function fail(variable: string, message: string): never {
  throw new RelayError(ErrorCode.config, `${variable}: ${message}`);
}

function set(env: Env, variable: string): string | undefined {
  const raw = env[variable]?.trim();
  return raw === undefined || raw === '' ? undefined : raw;
}

/** The URL's protocol is one of `protocols`; else undefined. */
function parsedUrl(value: string, protocols: readonly string[]): URL | undefined {
  try {
    const parsed = new URL(value);
    return protocols.includes(parsed.protocol) ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/**
 * RABBITMQ_URL: one `amqp://` / `amqps://` URL, or several separated by commas (the nodes of one
 * cluster, tried in order; a lost connection moves to the next).
 */
export function readBrokerUrls(env: Env, fallback: string): string[] {
  const raw = set(env, 'RABBITMQ_URL');
  if (raw === undefined) return [fallback];
  const entries = raw.split(',').map((entry) => entry.trim());
  entries.forEach((entry, index) => {
    const which = entries.length > 1 ? `entry ${index + 1} of ${entries.length} ` : '';
    if (entry === '') fail('RABBITMQ_URL', `${which}is empty (a stray comma?)`);
    if (!parsedUrl(entry, ['amqp:', 'amqps:'])) fail('RABBITMQ_URL', `${which}must be a URL starting with amqp:// or amqps://`);
  });
  if (new Set(entries).size !== entries.length) fail('RABBITMQ_URL', 'names the same URL twice');
  return entries;
}

/** `host:port` of one sentinel (an IPv6 host in brackets). */
function sentinelAddress(entry: string, index: number, count: number): { host: string; port: number } {
  const which = count > 1 ? `entry ${index + 1} of ${count}` : `"${entry}"`;
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(entry);
  const port = Number(match?.[2]);
  if (!match?.[1] || !Number.isInteger(port) || port < 1 || port > 65_535) {
    fail('REDIS_SENTINELS', `${which} must be host:port (e.g. 10.0.0.5:26379)`);
  }
  return { host: match[1].replace(/^\[|\]$/g, ''), port };
}

/**
 * REDIS_URL, or REDIS_SENTINELS with REDIS_SENTINEL_NAME (and REDIS_PASSWORD,
 * REDIS_SENTINEL_PASSWORD when the servers require them); never both kinds. Undefined: no Redis.
 */
export function readRedisTarget(env: Env): RedisTarget | undefined {
  const url = set(env, 'REDIS_URL');
  const sentinels = set(env, 'REDIS_SENTINELS');
  const name = set(env, 'REDIS_SENTINEL_NAME');
  if (url !== undefined && (sentinels !== undefined || name !== undefined)) {
    fail(
      sentinels !== undefined ? 'REDIS_SENTINELS' : 'REDIS_SENTINEL_NAME',
      'cannot be used together with REDIS_URL: set one or the other',
    );
  }
  if (url !== undefined) {
    if (!parsedUrl(url, ['redis:', 'rediss:'])) fail('REDIS_URL', 'must be a URL starting with redis:// or rediss://');
    return url;
  }
  if (sentinels === undefined) {
    if (name !== undefined) fail('REDIS_SENTINEL_NAME', 'needs REDIS_SENTINELS (the sentinels to ask)');
    return undefined;
  }
  if (name === undefined) fail('REDIS_SENTINELS', 'needs REDIS_SENTINEL_NAME (the master name the sentinels monitor)');
  const entries = sentinels.split(',').map((entry) => entry.trim());
  return {
    sentinels: entries.map((entry, index) => sentinelAddress(entry, index, entries.length)),
    name,
    password: set(env, 'REDIS_PASSWORD'),
    sentinelPassword: set(env, 'REDIS_SENTINEL_PASSWORD'),
  };
}
