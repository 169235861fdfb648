/**
 * One stream's delivery receipts on their way to RabbitMQ: what the stream hands over in one turn
 * of the event loop goes out as one batch (one confirm round trip for a burst), and each group's
 * `then` (the broker ack or reject of its messages) runs only once every receipt of the group was
 * confirmed.
 *
 * This module guarantees:
 * - `then` never runs for a group whose receipts were not all confirmed: a failed batch is kept
 *   and published again after a backoff on the stream's clock (0.5 s, doubling, at most 10 s;
 *   back to 0.5 s after a success), for as long as the group is `live`;
 * - a group that is no longer `live` (its consumer is gone, so RabbitMQ delivers its messages
 *   again and the stream sends their receipts again then) is dropped without publishing, and
 *   its `then` never runs;
 * - groups of other messages are never held back by a failing one beyond their own batch:
 *   batches run side by side, each on its own confirms.
 */
import { errorMessage } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import type { Clock, TimerHandle } from './background-clock.js';
import { settledWithin } from '../settle.js';
import type { ReceiptOutcome, ReceiptRequest, ReceiptSink } from './delivery-receipt.js';

export interface ReceiptOutboxOptions {
  user: string;
  /** The stream's epoch, written with each seq. */
  epoch: () => string;
  sink: ReceiptSink;
  clock: Clock;
  logger: Logger;
  events?: RelayEvents | undefined;
}

/** Receipts whose messages are settled together once all are confirmed. */
interface Group {
  receipts: readonly ReceiptRequest[];
  live: () => boolean;
  then: () => void;
  done: () => void;
}

const FIRST_RETRY_MS = 500;
const MAX_RETRY_MS = 10_000;

/** The delay before retry `attempt` (1, 2, ...). */
export function receiptRetryDelayMs(attempt: number): number {
  return Math.min(FIRST_RETRY_MS * 2 ** Math.max(0, attempt - 1), MAX_RETRY_MS);
}

export class ReceiptOutbox {
  /** Groups handed over in this turn, published together at its end. */
  private queued: Group[] = [];
  /** Groups of failed batches, published again when the retry timer fires. */
  private waiting: Group[] = [];
  private retryTimer: TimerHandle | undefined;
  private failures = 0;
  private readonly unsettled = new Set<Promise<void>>();
  private stopped = false;

  constructor(private readonly options: ReceiptOutboxOptions) {}

  /** Groups not yet confirmed or dropped. */
  get pendingCount(): number {
    return this.unsettled.size;
  }

  /**
   * Publishes `receipts` with the others of this turn; runs `then` once all are confirmed, and
   * only while `live()` holds (see the module comment).
   */
  send(receipts: readonly ReceiptRequest[], live: () => boolean, then: () => void): void {
    if (this.stopped || receipts.length === 0) return;
    let resolve = (): void => undefined;
    const settled = new Promise<void>((settle) => {
      resolve = settle;
    });
    const done = (): void => {
      this.unsettled.delete(settled);
      resolve();
    };
    this.unsettled.add(settled);
    this.queued.push({ receipts, live, then, done });
    if (this.queued.length === 1) queueMicrotask(() => this.flush());
  }

  /** A receipt of this stream's user, settled now; `seq` null for a message dead-lettered before it was numbered. */
  receipt(messageId: string, seq: number | null, outcome: ReceiptOutcome, reason?: string): ReceiptRequest {
    const epoch = seq === null ? null : this.options.epoch();
    return {
      messageId,
      user: this.options.user,
      seq,
      epoch,
      outcome,
      ...(reason === undefined ? {} : { reason }),
      at: this.options.clock.now(),
    };
  }

  /** Waits at most `waitMs` for the groups in flight (their messages are settled after them), then stops. */
  async close(waitMs: number): Promise<void> {
    await settledWithin(this.settled(), waitMs);
    this.stop();
  }

  /** Resolves once every group handed over so far was settled or dropped. */
  async settled(): Promise<void> {
    await Promise.all(this.unsettled);
  }

  /** Nothing more is published; groups not confirmed yet are dropped (their messages stay unacked). */
  stop(): void {
    this.stopped = true;
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
    for (const group of [...this.queued, ...this.waiting]) group.done();
    this.queued = [];
    this.waiting = [];
  }

  private flush(): void {
    const groups = this.queued.filter((group) => {
      if (group.live()) return true;
      group.done();
      return false;
    });
    this.queued = [];
    if (this.stopped || groups.length === 0) return;
    const receipts = groups.flatMap((group) => group.receipts);
    this.options.sink.publish(receipts).then(
      () => {
        this.failures = 0;
        this.options.events?.emit('receipts-published', receipts.length);
        for (const group of groups) {
          if (!this.stopped && group.live()) group.then();
          group.done();
        }
      },
      (error: unknown) => {
        this.options.events?.emit('receipts-failed', receipts.length);
        if (this.stopped) {
          // Dropped: their messages stay unacked (RabbitMQ hands them over again, with a new receipt).
          for (const group of groups) group.done();
          return;
        }
        this.failures += 1;
        const delayMs = receiptRetryDelayMs(this.failures);
        this.options.logger.warn(
          { user: this.options.user, receipts: receipts.length, retryInMs: delayMs, err: errorMessage(error) },
          'delivery receipts not confirmed; their messages stay unacked and the receipts are published again',
        );
        this.waiting.push(...groups);
        this.retryTimer ??= this.options.clock.setTimeout(() => {
          this.retryTimer = undefined;
          const again = this.waiting;
          this.waiting = [];
          for (const group of again) this.queued.push(group);
          if (again.length > 0) this.flush();
        }, delayMs);
      },
    );
  }
}
