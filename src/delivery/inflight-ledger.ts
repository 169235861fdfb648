/**
 * What one consumer holds from RabbitMQ and has not settled: numbered messages by seq, and every
 * delivery tag still outstanding on its channel. Pure bookkeeping, no I/O.
 *
 * This module guarantees:
 * - `settleUpTo(seq)` names exactly the tags of the held messages at or below `seq` (minus those
 *   it is told to keep), and uses one multiple-ack only when no other outstanding tag is at or
 *   below the highest of them: a multiple-ack never settles a message nobody acked.
 * - a tag is settled at most once (acking a tag twice is a channel error that ends the consumer).
 * - a held message that asked for a delivery receipt is never in `settleUpTo`'s ack: it is
 *   handed back apart, its tags stay outstanding (so no later multiple-ack covers them) until
 *   `release` names them, once its receipt is confirmed.
 * Delivery tags are valid only on the channel that delivered them, so a ledger belongs to one
 * consumer and is dropped with it.
 */

/** A numbered message RabbitMQ delivered and that is not acked or rejected yet. */
/** What a connection needs to send a seq, wherever it was numbered. */
export interface SendableMessage {
  /** The pre-encoded `msg` frame fields after `seq` and `redelivered` (see message-codec). */
  fragment: string;
  redelivered: boolean;
}

export interface HeldMessage {
  /** More than one when RabbitMQ delivered the same message twice (a producer retry). */
  tags: number[];
  /** The pre-encoded `msg` frame fields after `seq` and `redelivered` (see message-codec). */
  fragment: string;
  redelivered: boolean;
  /** The producer's timestamp (ms), for the delivery latency. */
  ts: number;
  /** The messageId to name in a delivery receipt, when the producer asked for one. */
  receipt?: string | undefined;
}

/** A held message taken out for its receipt: its tags stay outstanding until `release`. */
export interface AwaitingReceipt {
  seq: number;
  messageId: string;
  tags: number[];
}

/** The broker ack that settles a set of tags: one multiple-ack, or one ack per tag. */
export type BrokerAck = { multiple: true; tag: number } | { multiple: false; tags: number[] };

export interface Settled {
  ack: BrokerAck | undefined;
  /** How many tags the ack settles. */
  count: number;
  /** The producer timestamps of the settled messages (ms). */
  timestamps: number[];
  /** Messages at or below the seq that asked for a receipt: not in `ack`, acked once `release`d. */
  receipts: AwaitingReceipt[];
}

export class InFlightLedger {
  private readonly held = new Map<number, HeldMessage>();
  /** Tags delivered on this channel and neither acked nor rejected yet. */
  private readonly outstanding = new Set<number>();

  get size(): number {
    return this.held.size;
  }

  seqs(): number[] {
    return [...this.held.keys()];
  }

  get outstandingCount(): number {
    return this.outstanding.size;
  }

  /** A delivery arrived (numbered or not yet). */
  received(tag: number): void {
    this.outstanding.add(tag);
  }

  /** A delivery was settled on its own (rejected as invalid, acked as already processed). */
  settled(tag: number): void {
    this.outstanding.delete(tag);
  }

  /** A delivery was numbered `seq` and is held until a client acks or nacks it. */
  hold(seq: number, tag: number, message: Omit<HeldMessage, 'tags'>): void {
    const existing = this.held.get(seq);
    if (existing) existing.tags.push(tag);
    else this.held.set(seq, { ...message, tags: [tag] });
  }

  get(seq: number): HeldMessage | undefined {
    return this.held.get(seq);
  }

  has(seq: number): boolean {
    return this.held.has(seq);
  }

  /** Removes one held message and returns its tags, for a reject. */
  take(seq: number): number[] {
    const entry = this.detach(seq);
    for (const tag of entry?.tags ?? []) this.outstanding.delete(tag);
    return entry?.tags ?? [];
  }

  /** Removes one held message but keeps its tags outstanding (a reject waits for its receipt); `release` them later. */
  detach(seq: number): HeldMessage | undefined {
    const entry = this.held.get(seq);
    this.held.delete(seq);
    return entry;
  }

  /**
   * Settles tags kept outstanding (`detach`, `settleUpTo`'s receipts) and returns the ack that
   * settles them: one multiple-ack when no other outstanding tag is at or below the highest.
   */
  release(tags: readonly number[]): BrokerAck | undefined {
    const mine = tags.filter((tag) => this.outstanding.has(tag));
    if (mine.length === 0) return undefined;
    const highest = Math.max(...mine);
    let below = 0;
    for (const tag of this.outstanding) if (tag <= highest) below += 1;
    for (const tag of mine) this.outstanding.delete(tag);
    return below === mine.length ? { multiple: true, tag: highest } : { multiple: false, tags: mine };
  }

  /**
   * Removes every held message at or below `seq`, except those `keep` names, and returns the
   * broker ack that settles them.
   */
  settleUpTo(seq: number, keep: (seq: number) => boolean = () => false): Settled {
    const tags: number[] = [];
    const timestamps: number[] = [];
    const receipts: AwaitingReceipt[] = [];
    let highest = 0;
    for (const [heldSeq, entry] of this.held) {
      if (heldSeq > seq || keep(heldSeq)) continue;
      this.held.delete(heldSeq);
      timestamps.push(entry.ts);
      if (entry.receipt !== undefined) {
        receipts.push({ seq: heldSeq, messageId: entry.receipt, tags: entry.tags });
        continue;
      }
      for (const tag of entry.tags) {
        tags.push(tag);
        if (tag > highest) highest = tag;
      }
    }
    if (tags.length === 0) return { ack: undefined, count: 0, timestamps, receipts };
    let below = 0;
    for (const tag of this.outstanding) if (tag <= highest) below += 1;
    for (const tag of tags) this.outstanding.delete(tag);
    const ack: BrokerAck = below === tags.length ? { multiple: true, tag: highest } : { multiple: false, tags };
    return { ack, count: tags.length, timestamps, receipts };
  }
}
