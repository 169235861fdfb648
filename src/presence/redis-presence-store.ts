/**
 * The presence store in Redis (contract in presence-store.ts): every request is one run of the
 * PRESENCE script (src/presence/presence.lua), so the nodes that share a Redis and a key prefix
 * agree on who is online, and each move between online and offline is reported to one of them.
 * Time is Redis's, so nodes whose clocks disagree still agree on what expired.
 *
 * It opens its own connection (`createRedisClient`: fail fast, reconnect forever), apart from the
 * state store's, and is not guarded by the store's breaker: presence is best-effort, and its
 * failures must not take delivery out of service.
 */
import type { Redis } from 'ioredis';
import { ErrorCode, RelayError } from '../errors.js';
import { createRedisClient, type RedisTarget } from '../store/redis-target.js';
import { PRESENCE } from './presence-script.generated.js';
import {
  LAST_SEEN_TTL_MS,
  type PresenceEntry,
  type PresenceOperation,
  type PresenceStore,
  type PresenceTransition,
  type UserPresence,
} from './presence-store.js';

export interface RedisPresenceStoreOptions {
  /** A `redis://` URL, or the Sentinel set that names the primary. */
  url: RedisTarget;
  /** The deployment's key prefix (REDIS_KEY_PREFIX): nodes with the same one share presence. */
  keyPrefix: string;
  commandTimeoutMs?: number;
  /** How long a user's lastSeen is kept (default 30 days). */
  lastSeenTtlMs?: number;
}

type ScriptCall = (numKeys: number, ...args: (string | number)[]) => Promise<unknown>;

/** The index key: the users online now, by their earliest entry expiry. */
export function presenceIndexKey(keyPrefix: string): string {
  return `${keyPrefix}presence`;
}

export class RedisPresenceStore implements PresenceStore {
  readonly redis: Redis;
  private readonly script: ScriptCall;
  private readonly index: string;
  private readonly lastSeenTtlMs: number;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: RedisPresenceStoreOptions) {
    this.redis = createRedisClient(options.url, options.commandTimeoutMs);
    // A lost connection shows as failed calls (and ioredis reconnects by itself); without a
    // listener, ioredis would print every failed reconnect attempt.
    this.redis.on('error', () => undefined);
    this.redis.defineCommand('irPresence', { lua: PRESENCE });
    const call = (this.redis as unknown as Record<string, ScriptCall | undefined>)['irPresence'];
    if (!call) throw new Error('script irPresence not defined');
    this.script = call.bind(this.redis);
    this.index = presenceIndexKey(options.keyPrefix);
    this.lastSeenTtlMs = options.lastSeenTtlMs ?? LAST_SEEN_TTL_MS;
  }

  async connect(): Promise<void> {
    if (this.redis.status === 'wait') await this.redis.connect();
  }

  async apply(operations: readonly PresenceOperation[], ttlMs: number): Promise<PresenceTransition[]> {
    if (operations.length === 0) return [];
    const args: string[] = [];
    for (const op of operations) {
      if (op.kind === 'put') args.push('p', op.user, op.connection, JSON.stringify(op.entry));
      else args.push('r', op.user, op.connection);
    }
    const reply = await this.script(1, this.index, 'apply', this.options.keyPrefix, ttlMs, this.lastSeenTtlMs, ...args);
    return decodeMoves(reply);
  }

  async sweep(limit: number): Promise<PresenceTransition[]> {
    return decodeMoves(await this.script(1, this.index, 'sweep', this.options.keyPrefix, limit, this.lastSeenTtlMs));
  }

  async read(users: readonly string[]): Promise<UserPresence[]> {
    if (users.length === 0) return [];
    const reply = await this.script(1, this.index, 'read', this.options.keyPrefix, ...users);
    if (!Array.isArray(reply) || !Array.isArray(reply[1]) || reply[1].length !== users.length) throw malformed('read', reply);
    const rows = reply[1] as unknown[];
    return users.map((user, i) => decodeUser(user, rows[i]));
  }

  /** Closes the connection once Redis answered what was sent; one that is not up is only stopped. Idempotent. */
  close(): Promise<void> {
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      this.closing ??= Promise.resolve();
    }
    this.closing ??= this.redis.quit().then(
      () => undefined,
      () => this.redis.disconnect(),
    );
    return this.closing;
  }
}

function malformed(request: string, reply: unknown): RelayError {
  const got = Array.isArray(reply) ? `${reply.length} results` : typeof reply;
  return new RelayError(ErrorCode.storeReply, `malformed presence reply to ${request}: ${got}`);
}

/** `{ now, moves }` with moves a flat list of (user, 1 | 0, count). */
function decodeMoves(reply: unknown): PresenceTransition[] {
  if (!Array.isArray(reply) || reply.length !== 2 || !Array.isArray(reply[1]) || reply[1].length % 3 !== 0) {
    throw malformed('apply/sweep', reply);
  }
  const at = Number(reply[0]);
  const flat = reply[1] as unknown[];
  const moves: PresenceTransition[] = [];
  for (let i = 0; i < flat.length; i += 3) {
    moves.push({ user: String(flat[i]), online: Number(flat[i + 1]) === 1, connections: Number(flat[i + 2]), at });
  }
  return moves;
}

/** One user's row: lastSeen or null, then (connection, entry JSON, expiry) per live entry. */
function decodeUser(user: string, row: unknown): UserPresence {
  if (!Array.isArray(row) || row.length % 3 !== 1) throw malformed('read', row);
  const connections: PresenceEntry[] = [];
  for (let i = 1; i < row.length; i += 3) {
    const entry = decodeEntry(row[i + 1]);
    if (entry) connections.push(entry);
  }
  connections.sort((a, b) => a.since - b.since);
  const lastSeen = row[0] === null || row[0] === undefined ? undefined : Number(row[0]);
  const online = connections.length > 0;
  return { user, online, connections, ...(!online && lastSeen !== undefined && Number.isFinite(lastSeen) ? { lastSeen } : {}) };
}

/** An entry as stored, or undefined for one that is not (written by another version, say). */
export function decodeEntry(text: unknown): PresenceEntry | undefined {
  if (typeof text !== 'string') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { node, since, device } = value as Record<string, unknown>;
  if (typeof node !== 'string' || typeof since !== 'number') return undefined;
  return { node, since, ...(typeof device === 'string' ? { device } : {}) };
}
