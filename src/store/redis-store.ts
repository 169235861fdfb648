import { Redis } from 'ioredis';
import { newEpoch } from './memory-store.js';
import { ACK, ASSIGN, META, RANGE } from './redis-scripts.js';
import { decodeEntry } from './store.js';
import type { AssignInput, HistoryEntry, HistoryLimits, SeqStore, StreamMeta } from './store.js';

type ScriptCall = (...args: (string | number)[]) => Promise<unknown>;

export interface RedisStoreOptions {
  url: string;
  keyPrefix: string;
  limits: HistoryLimits;
  /** A command that takes longer fails (so breakers can open instead of requests piling up). */
  commandTimeoutMs?: number;
}

/** Redis client settings the relay relies on: fail fast, reconnect forever with capped backoff. */
export function createRedisClient(url: string, commandTimeoutMs = 2_000): Redis {
  return new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 1,
    commandTimeout: commandTimeoutMs,
    enableAutoPipelining: true,
    retryStrategy: (attempt) => Math.min(100 * 2 ** Math.min(attempt, 6), 5_000),
  });
}

/**
 * The state store in Redis (see store.ts for the guarantees). Every operation is one Lua script,
 * so concurrent relays agree on seqs. Redis without persistence loses numberings on restart;
 * clients then get `reset` with a new epoch.
 */
export class RedisStore implements SeqStore {
  readonly redis: Redis;
  private readonly scripts: Record<'assign' | 'ack' | 'meta' | 'range', ScriptCall>;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: RedisStoreOptions) {
    this.redis = createRedisClient(options.url, options.commandTimeoutMs);
    this.redis.defineCommand('irAssign', { numberOfKeys: 3, lua: ASSIGN });
    this.redis.defineCommand('irAck', { numberOfKeys: 3, lua: ACK });
    this.redis.defineCommand('irMeta', { numberOfKeys: 1, lua: META });
    this.redis.defineCommand('irRange', { numberOfKeys: 2, lua: RANGE });
    const commands = this.redis as unknown as Record<string, ScriptCall>;
    const bind = (name: string): ScriptCall => {
      const fn = commands[name];
      if (!fn) throw new Error(`script ${name} not defined`);
      return fn.bind(this.redis);
    };
    this.scripts = { assign: bind('irAssign'), ack: bind('irAck'), meta: bind('irMeta'), range: bind('irRange') };
  }

  async connect(): Promise<void> {
    if (this.redis.status === 'wait') await this.redis.connect();
  }

  private keys(user: string): [string, string, string] {
    const base = `${this.options.keyPrefix}{${user}}`;
    return [`${base}:m`, `${base}:i`, `${base}:h`];
  }

  async meta(user: string): Promise<StreamMeta> {
    const [meta] = this.keys(user);
    const reply = (await this.scripts.meta(meta, newEpoch())) as [string, string, string, string];
    return { epoch: reply[0], seq: Number(reply[1]), acked: Number(reply[2]), start: Number(reply[3]) };
  }

  async peek(user: string): Promise<StreamMeta | undefined> {
    const [meta] = this.keys(user);
    const [epoch, seq, acked, start] = await this.redis.hmget(meta, 'epoch', 'seq', 'acked', 'start');
    if (!epoch) return undefined;
    return { epoch, seq: Number(seq), acked: Number(acked), start: Number(start) };
  }

  async assign(user: string, epoch: string, inputs: readonly AssignInput[]): Promise<number[] | null> {
    const { maxCount, maxAgeMs } = this.options.limits;
    const args: (string | number)[] = [...this.keys(user), epoch, Date.now(), maxCount, maxAgeMs];
    for (const input of inputs) args.push(input.id, input.fragment);
    const reply = (await this.scripts.assign(...args)) as 0 | number[];
    return reply === 0 ? null : reply.map(Number);
  }

  async ack(user: string, epoch: string, seq: number): Promise<boolean> {
    const { maxCount, maxAgeMs } = this.options.limits;
    return (await this.scripts.ack(...this.keys(user), epoch, seq, Date.now(), maxCount, maxAgeMs)) === 1;
  }

  async range(user: string, epoch: string, from: number, to: number): Promise<HistoryEntry[] | null> {
    const [meta, , hist] = this.keys(user);
    const reply = (await this.scripts.range(meta, hist, epoch, from, to)) as 0 | (string | number)[];
    if (reply === 0) return null;
    const entries: HistoryEntry[] = [];
    for (let i = 0; i + 1 < reply.length; i += 2) {
      const entry = decodeEntry(Number(reply[i]), String(reply[i + 1]));
      if (entry) entries.push(entry);
    }
    return entries;
  }

  async forget(user: string): Promise<void> {
    await this.redis.del(...this.keys(user));
  }

  close(): Promise<void> {
    this.closing ??= this.redis.quit().then(
      () => undefined,
      () => this.redis.disconnect(),
    );
    return this.closing;
  }
}
