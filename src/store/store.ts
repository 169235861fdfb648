/**
 * The state store behind `seq` numbering, resume and history.
 *
 * For each user it keeps one numbering, named by an `epoch`: `seq` is the last number handed out,
 * `acked` the highest seq some client acknowledged, and a history of entries from `start` to `seq`.
 * Guarantees every implementation gives:
 * - `assign` gives each new message id the next seq, and an id it has seen before the same seq
 *   again (as long as its entry is in history), atomically for the whole batch.
 * - seqs are never reused within an epoch; if the store lost a user's numbering, calls naming
 *   the old epoch say so, and `meta` starts a new epoch at seq 1.
 * - history entries above `acked` are never trimmed; entries at or below it are trimmed by count
 *   and by age.
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

export interface SeqStore {
  /** The user's numbering, started at a new epoch when there is none. */
  meta(user: string): Promise<StreamMeta>;
  /** The user's numbering if there is one, without starting one (operator tools). */
  peek(user: string): Promise<StreamMeta | undefined>;
  /**
   * Assigns seqs to a batch of messages in order (see the guarantees above): one per input.
   * Null when `epoch` is gone; then nothing is assigned, so that after a loss seqs are handed
   * out again only from `meta` on, in the order RabbitMQ delivers the messages once more.
   */
  assign(user: string, epoch: string, inputs: readonly AssignInput[]): Promise<number[] | null>;
  /** Raises the acked mark (never lowers it) and trims history. False when `epoch` is gone. */
  ack(user: string, epoch: string, seq: number): Promise<boolean>;
  /** History entries in [from, to] that are still kept, in seq order; null when `epoch` is gone. */
  range(user: string, epoch: string, from: number, to: number): Promise<HistoryEntry[] | null>;
  /** Drops one user's state (operator use and tests). */
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
