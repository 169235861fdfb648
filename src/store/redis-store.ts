import type { Redis } from 'ioredis';
import { ErrorCode, RelayError } from '../errors.js';
import { BATCH } from './lua/scripts.generated.js';
import { newEpoch } from './memory-store.js';
import { decodeEntry } from './store.js';
import type { AssignInput, Assigned, HistoryEntry, HistoryLimits, SeqStore, StreamMeta } from './store.js';
import { createRedisClient, type RedisTarget } from './redis-target.js';

export { createRedisClient };

type BatchCall = (numKeys: number, ...args: (string | number)[]) => Promise<unknown[]>;

/** Runs one call to Redis, e.g. through a circuit breaker (see guardWith). */
export type CallRunner = <T>(call: () => Promise<T>) => Promise<T>;

export interface RedisStoreOptions {
  /** A `redis://` URL, or the Sentinel set that names the primary. */
  url: RedisTarget;
  keyPrefix: string;
  limits: HistoryLimits;
  /** A command that takes longer fails (so breakers can open instead of requests piling up). */
  commandTimeoutMs?: number;
  /** Most operations sent in one script call (default 256); more in one turn take several calls. */
  maxBatchOps?: number;
}

/** Keys each operation passes to the script (meta, ids, hist, dead). */
const KEYS_PER_OPERATION = 4;
/** Past this many arguments (keys included) a batch is cut, whatever its operation count. */
const MAX_BATCH_ARGS = 20_000;
/** Past this many history entries read back (ranges) a batch is cut. */
const MAX_BATCH_ENTRIES = 1_000;

/** One queued store operation: its script arguments, and what to do with its reply. */
interface Operation {
  user: string;
  /** The operation's kind and arguments as BATCH reads them (see src/store/lua/). */
  args: (string | number)[];
  /** History entries the operation may read back (a range), for the batch's reply budget. */
  entries: number;
  settle(reply: unknown): void;
  fail(error: unknown): void;
}

/** How many of the store's operations went to Redis, in how many script calls (for metrics and tests). */
export interface BatchStats {
  calls: number;
  operations: number;
}

/**
 * The state store in Redis (see store.ts for the guarantees). Every operation is part of a Lua
 * script, so concurrent relays agree on seqs. Redis without persistence loses numberings on
 * restart; clients then get `reset` with a new epoch.
 *
 * Operations are not sent one by one: those of one event-loop turn, for every user, go as one
 * script call (BATCH) at the end of the turn, in the order they were made. With many users each
 * getting a few messages a second, one call per message would cost a command, a reply, a promise
 * and a script run each; batched, a busy relay makes a few hundred calls a second instead of
 * thousands. An operation waits at most until the end of the current turn.
 */
export class RedisStore implements SeqStore {
  readonly redis: Redis;
  private readonly batch: BatchCall;
  private readonly maxBatchOps: number;
  private queue: Operation[] = [];
  private flushScheduled = false;
  /** Script calls sent and not answered yet (close waits for them). */
  private readonly inFlight = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;
  private readonly counts: BatchStats = { calls: 0, operations: 0 };
  private run: CallRunner = (call) => call();

  constructor(private readonly options: RedisStoreOptions) {
    this.redis = createRedisClient(options.url, options.commandTimeoutMs);
    // No numberOfKeys: each call passes its own key count (4 per operation).
    this.redis.defineCommand('irBatch', { lua: BATCH });
    const call = (this.redis as unknown as Record<string, BatchCall | undefined>)['irBatch'];
    if (!call) throw new Error('script irBatch not defined');
    this.batch = call.bind(this.redis);
    this.maxBatchOps = options.maxBatchOps ?? 256;
  }

  /**
   * Runs every script call through `runner` (the relay's Redis breaker): the breaker then sees
   * one call per round trip, so a slow round trip counts once, not once per operation it
   * carried, and while it is open every operation fails at once with the breaker's error.
   */
  guardWith(runner: CallRunner): void {
    this.run = runner;
  }

  /** A round trip to Redis outside the batches (the breaker's probe, which the breaker runs itself). */
  async ping(): Promise<void> {
    await this.redis.ping();
  }

  get stats(): BatchStats {
    return { ...this.counts };
  }

  async connect(): Promise<void> {
    if (this.redis.status === 'wait') await this.redis.connect();
  }

  /** The user's meta, ids, history and dead-letter intent keys (see src/store/lua/prelude.lua). */
  private keys(user: string): [string, string, string, string] {
    const base = `${this.options.keyPrefix}{${user}}`;
    return [`${base}:m`, `${base}:i`, `${base}:h`, `${base}:d`];
  }

  private enqueue<T>(user: string, args: (string | number)[], decode: (reply: unknown) => T, entries = 0): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        user,
        args,
        entries,
        settle: (reply) => {
          // An operation that failed in the script has an error reply of its own.
          if (reply instanceof Error) return reject(reply);
          try {
            resolve(decode(reply));
          } catch (error) {
            // The decoders throw Errors; anything else is wrapped so that callers always get one.
            reject(error instanceof Error ? error : new Error(String(error), { cause: error }));
          }
        },
        fail: reject,
      });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  /**
   * Sends what this turn queued: one script call per maxBatchOps operations, or fewer when their
   * arguments would pass MAX_BATCH_ARGS or the history they read back MAX_BATCH_ENTRIES (Redis
   * runs a script without serving anyone else, and the reply is read as one).
   */
  private flush(): void {
    this.flushScheduled = false;
    const queued = this.queue;
    this.queue = [];
    let from = 0;
    let args = 0;
    let entries = 0;
    for (let i = 0; i < queued.length; i += 1) {
      const operation = queued[i]!;
      const size = operation.args.length + KEYS_PER_OPERATION;
      const full = i - from >= this.maxBatchOps || args + size > MAX_BATCH_ARGS || entries + operation.entries > MAX_BATCH_ENTRIES;
      if (i > from && full) {
        this.send(queued.slice(from, i));
        from = i;
        args = 0;
        entries = 0;
      }
      args += size;
      entries += operation.entries;
    }
    if (from < queued.length) this.send(queued.slice(from));
  }

  private send(operations: Operation[]): void {
    const { maxCount, maxAgeMs } = this.options.limits;
    const keys: string[] = [];
    const args: (string | number)[] = [Date.now(), maxCount, maxAgeMs];
    for (const operation of operations) {
      keys.push(...this.keys(operation.user));
      for (const arg of operation.args) args.push(arg);
    }
    this.counts.calls += 1;
    this.counts.operations += operations.length;
    const sent: Promise<void> = this.run(() => this.batch(keys.length, ...keys, ...args)).then(
      (replies) => {
        this.inFlight.delete(sent);
        for (let i = 0; i < operations.length; i += 1) operations[i]!.settle(replies[i]);
      },
      (error: unknown) => {
        this.inFlight.delete(sent);
        for (const operation of operations) operation.fail(error);
      },
    );
    this.inFlight.add(sent);
  }

  meta(user: string): Promise<StreamMeta> {
    return this.enqueue(user, ['m', newEpoch()], (reply) => {
      const meta = Array.isArray(reply) ? decodeMeta(reply as (string | null)[]) : undefined;
      if (!meta) throw malformed('meta', reply);
      return meta;
    });
  }

  /** A plain read, outside the batches (operator tools need no script permission for it). */
  async peek(user: string): Promise<StreamMeta | undefined> {
    const [meta] = this.keys(user);
    return decodeMeta(await this.redis.hmget(meta, 'epoch', 'seq', 'acked', 'start'));
  }

  assign(user: string, epoch: string, seen: number, inputs: readonly AssignInput[]): Promise<Assigned[] | null> {
    const args: (string | number)[] = ['a', epoch, seen, inputs.length];
    for (const input of inputs) args.push(input.id, input.fragment);
    return this.enqueue(user, args, (reply) => {
      if (reply === 0) return null;
      // One seq per input, negated for an id with a dead-letter intent: anything else would
      // leave some message without a seq, and its caller could only guess (or ack it unsent).
      if (!Array.isArray(reply) || reply.length !== inputs.length) throw malformed('assign', reply, inputs.length);
      return reply.map((value: unknown): Assigned => {
        if (typeof value !== 'number' || !Number.isSafeInteger(value) || value === 0) throw malformed('assign', reply, inputs.length);
        return { seq: Math.abs(value), deadLetter: value < 0 };
      });
    });
  }

  ack(user: string, epoch: string, seq: number): Promise<boolean> {
    return this.enqueue(user, ['k', epoch, seq], (reply) => {
      if (reply !== 0 && reply !== 1) throw malformed('ack', reply);
      return reply === 1;
    });
  }

  range(user: string, epoch: string, from: number, to: number): Promise<HistoryEntry[] | null> {
    return this.enqueue(
      user,
      ['r', epoch, from, to],
      (reply) => {
        if (reply === 0) return null;
        if (!Array.isArray(reply) || reply.length % 2 !== 0) throw malformed('range', reply);
        const raw = reply as unknown[];
        const entries: HistoryEntry[] = [];
        for (let i = 0; i < raw.length; i += 2) {
          const entry = decodeEntry(Number(raw[i]), String(raw[i + 1]));
          if (!entry || !Number.isSafeInteger(entry.seq)) throw malformed('range', reply);
          entries.push(entry);
        }
        return entries;
      },
      Math.max(0, to - from + 1),
    );
  }

  async discard(user: string, epoch: string): Promise<void> {
    await this.enqueue(user, ['x', epoch], () => undefined);
  }

  deadLetter(user: string, epoch: string, seq: number): Promise<boolean | null> {
    return this.enqueue(user, ['d', epoch, seq], (reply) => {
      if (reply === 0) return null;
      if (reply !== 1 && reply !== -1) throw malformed('deadLetter', reply);
      return reply === 1;
    });
  }

  async deadLettered(user: string, epoch: string, seqs: readonly number[]): Promise<void> {
    if (seqs.length === 0) return;
    await this.enqueue(user, ['c', epoch, seqs.length, ...seqs], () => undefined);
  }

  async deadLetterRequests(user: string, epoch: string, seqs: readonly number[]): Promise<number[] | null> {
    if (seqs.length === 0) return [];
    return this.enqueue(user, ['q', epoch, seqs.length, ...seqs], (reply) => {
      if (reply === 0) return null;
      if (!Array.isArray(reply) || !reply.every((seq) => typeof seq === 'number' && seqs.includes(seq))) {
        throw malformed('deadLetterRequests', reply);
      }
      return reply as number[];
    });
  }

  async forget(user: string): Promise<void> {
    await this.enqueue(user, ['f'], () => undefined);
  }

  /** Sends what is queued, then closes the connection once Redis answered it. */
  close(): Promise<void> {
    if (this.flushScheduled) this.flush();
    this.closing ??= Promise.all(this.inFlight)
      .then(() => this.redis.quit())
      .then(
        () => undefined,
        () => this.redis.disconnect(),
      );
    return this.closing;
  }
}

/** The meta hash's fields (epoch, seq, acked, start) as read; undefined when there is no numbering. */
function decodeMeta([epoch, seq, acked, start]: (string | null | undefined)[]): StreamMeta | undefined {
  return epoch ? { epoch, seq: Number(seq), acked: Number(acked), start: Number(start) } : undefined;
}

/** The error for a script reply that does not have the shape its operation promises. */
function malformed(operation: string, reply: unknown, expected?: number): RelayError {
  const got = Array.isArray(reply) ? `${reply.length} results` : typeof reply;
  const wanted = expected === undefined ? '' : ` (expected ${expected} results)`;
  return new RelayError(ErrorCode.storeReply, `malformed store reply to ${operation}: ${got}${wanted}`);
}
