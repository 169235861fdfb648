/**
 * The state store behind `seq` numbering, resume, history and dead-letter intents.
 *
 * For each user it keeps one numbering, named by an `epoch`: `seq` is the last number handed out,
 * `acked` the highest seq some client acknowledged, a history of entries from `start` to `seq`,
 * and the dead-letter intents recorded in it. Guarantees every implementation gives:
 * - `assign` gives each new message id the next seq, and an id it has seen before the same seq
 *   again (as long as its entry is in history), atomically for the whole batch, exactly one
 *   result per input; a store that cannot say so fails the call (RELAY_ERR_STORE_REPLY) rather
 *   than answer short.
 * - seqs are never reused within an epoch; if the store lost a user's numbering, calls naming
 *   the old epoch say so (null or false), and `meta` starts a new epoch at seq 1.
 * - A store that went back in time (restarted from an older snapshot or append-only file, or
 *   failed over to a lagging replica) keeps the epoch but has a lower `seq`; handing out those
 *   seqs again would number new messages with seqs clients already acked. So whenever a caller
 *   shows it saw more than the store holds (`assign` with `seen` above `seq`, `ack` or `range`
 *   past `seq`, a dead-letter intent past `seq`, or `discard`), the store drops the user's whole
 *   numbering, as if lost: the call answers "epoch gone" and `meta` starts a new epoch.
 * - history entries above `acked` are never trimmed; entries at or below it are trimmed by count
 *   and by age.
 * - A dead-letter intent (`deadLetter`) outlives acks and history trimming: until
 *   `deadLettered` clears it (or the numbering is dropped), `assign` answers the intent's seq
 *   with `deadLetter: true` for that message id, and hands out no new seq for it.
 */
export interface StreamMeta {
  epoch: string;
  /** The last seq handed out (0 when none). */
  seq: number;
  /** The highest seq some client acknowledged. */
  acked: number;
  /** The lowest seq still in history; `start > seq` means history is empty. */
  start: number;
}

export interface AssignInput {
  /** The producer's messageId: the idempotency key. */
  id: string;
  /** The pre-encoded `msg` frame fields after `seq` and `redelivered` (see message-codec). */
  fragment: string;
}

export interface HistoryEntry {
  seq: number;
  id: string;
  /** When the entry was stored (ms). */
  storedAt: number;
  fragment: string;
}

export interface HistoryLimits {
  maxCount: number;
  maxAgeMs: number;
}

/** What `assign` answers for one input. */
export interface Assigned {
  seq: number;
  /** A client asked for this message to be dead-lettered (see `deadLetter`): reject it, do not send it. */
  deadLetter: boolean;
}

export interface SeqStore {
  /** The user's numbering, started at a new epoch when there is none. */
  meta(user: string): Promise<StreamMeta>;
  /** The user's numbering if there is one, without starting one (operator tools). */
  peek(user: string): Promise<StreamMeta | undefined>;
  /**
   * Assigns seqs to a batch of messages in order (see the guarantees above): exactly one result
   * per input, in input order. `seen` is the highest seq the caller knows this store handed out
   * in `epoch` (0 when it knows none); when the store's `seq` is below it, the store went back
   * in time and drops the user's numbering.
   * Null when `epoch` is gone (or was just dropped); then nothing is assigned, so that after a
   * loss seqs are handed out again only from `meta` on, in the order RabbitMQ delivers the
   * messages once more.
   */
  assign(user: string, epoch: string, seen: number, inputs: readonly AssignInput[]): Promise<Assigned[] | null>;
  /**
   * Raises the acked mark (never lowers it) and trims history. False when `epoch` is gone, or
   * when `seq` is above the store's `seq` (the store went back in time: the numbering is dropped).
   */
  ack(user: string, epoch: string, seq: number): Promise<boolean>;
  /**
   * History entries in [from, to] that are still kept, in seq order. Null when `epoch` is gone,
   * or when `to` is above the store's `seq` (the store went back in time: the numbering is dropped).
   */
  range(user: string, epoch: string, from: number, to: number): Promise<HistoryEntry[] | null>;
  /**
   * Drops the user's numbering if `epoch` is still the current one (a caller found the store
   * behind what it saw); a newer epoch, started meanwhile by another node, is left alone. Idempotent.
   */
  discard(user: string, epoch: string): Promise<void>;
  /**
   * Records the intent to dead-letter the message numbered `seq`, by its message id, until
   * `deadLettered` clears it. True: recorded (or already recorded). False: history no longer
   * holds `seq` (nothing to dead-letter). Null when `epoch` is gone, or when `seq` is above the
   * store's `seq` (the store went back in time: the numbering is dropped).
   */
  deadLetter(user: string, epoch: string, seq: number): Promise<boolean | null>;
  /** Clears the intents of these seqs (their messages were rejected). Unknown seqs and a gone epoch are ignored. */
  deadLettered(user: string, epoch: string, seqs: readonly number[]): Promise<void>;
  /**
   * The seqs among `seqs` whose messages have a dead-letter intent (recorded by any node). Null
   * when `epoch` is gone. Writes nothing.
   */
  deadLetterRequests(user: string, epoch: string, seqs: readonly number[]): Promise<number[] | null>;
  /** Drops one user's state, intents included (operator use and tests). */
  forget(user: string): Promise<void>;
  close(): Promise<void>;
}

/** Encodes a history entry as stored: `<storedAt>\n<id>\n<fragment>` (ids never hold control characters). */
export function encodeEntry(storedAt: number, id: string, fragment: string): string {
  return `${storedAt}\n${id}\n${fragment}`;
}

export function decodeEntry(seq: number, raw: string): HistoryEntry | undefined {
  const first = raw.indexOf('\n');
  const second = raw.indexOf('\n', first + 1);
  if (first < 0 || second < 0) return undefined;
  return { seq, storedAt: Number(raw.slice(0, first)), id: raw.slice(first + 1, second), fragment: raw.slice(second + 1) };
}
