/**
 * Numbers one consumer's deliveries, in the order RabbitMQ delivered them.
 *
 * This module guarantees:
 * - every delivery pushed is either numbered (handed to `onNumbered`, in arrival order) or
 *   rejected as invalid (`onInvalid`), unless the intake is stopped first (its consumer is gone,
 *   so RabbitMQ has the message back);
 * - while the store fails, deliveries stay here, unacked on the consumer and in order, and are
 *   tried again a second later. Closing the channel instead would return them behind messages
 *   returned earlier (quorum queues requeue that way) and they could be numbered out of order;
 * - a store reply that does not give exactly one number per message is a failure (logged as an
 *   error, retried), never a partial result: a missing seq read as 0 would look processed and
 *   the message would be acked without being sent.
 * - a replay header counts only with a valid seal (message-codec.ts, replay-seal.ts): one
 *   without is numbered by its messageId, as any copy, and reported through `onReplayRefused`.
 * Deliveries parsed from one socket read arrive in one turn and are numbered in one store call.
 */
import { background } from '../background.js';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { Assigned, SeqStore } from '../store/store.js';
import { backgroundClock, type Clock, type TimerHandle } from './background-clock.js';
import type { Delivery } from './consumer.js';
import { decodeMessage, type InvalidMessageCode } from './message-codec.js';
import type { ReplayRefusal, ReplaySeal } from './replay-seal.js';

/** A delivery decoded into the parts of a `msg` frame. */
interface Decoded {
  delivery: Delivery;
  /** The idempotency key the store numbers by (the messageId, or its replay key). */
  id: string;
  fragment: string;
  /** The producer's timestamp (ms). */
  ts: number;
  /** The messageId to name in a delivery receipt, when the producer asked for one. */
  receipt: string | undefined;
}

/** A delivery and the seq the store gave it. */
export type Numbered = Decoded & Assigned;

export interface NumberingIntakeOptions {
  user: string;
  store: SeqStore;
  maxMessageBytes: number;
  /** Checks the seal of replayed dead letters (REPLAY_KEY); undefined: no replay header is honoured. */
  replaySeal?: ReplaySeal | undefined;
  logger: Logger;
  clock?: Clock;
  /** A delivery carried a replay header without a valid seal: it is numbered by its messageId. */
  onReplayRefused?(delivery: Delivery, reason: ReplayRefusal): void;
  /** The numbering deliveries are assigned in: its epoch and the highest seq seen handed out. */
  position(): { epoch: string; seen: number };
  /** A batch was numbered (in queue order). */
  onNumbered(batch: Numbered[]): void;
  /**
   * A delivery is not a valid message: dead-letter it with `code` as its reason (`reason` says
   * more, for the log); `receiptFor` is its messageId when it asked for a receipt.
   */
  onInvalid(delivery: Delivery, reason: string, code: InvalidMessageCode, receiptFor: string | undefined): void;
  /** The store no longer has this numbering (or it went back in time). */
  onEpochGone(): void;
  /** The store failed a batch (it is kept and retried), or numbered one again. */
  onStoreHealth(up: boolean): void;
}

/** Messages per store call. */
const BATCH = 200;
const RETRY_MS = 1_000;

export class NumberingIntake {
  private pending: Delivery[] = [];
  private running: Promise<boolean> | undefined;
  private retryTimer: TimerHandle | undefined;
  private stopped = false;
  private readonly clock: Clock;

  /** `ready` resolves once the consumer's handle exists (rejecting an invalid message needs it). */
  constructor(
    private readonly options: NumberingIntakeOptions,
    private readonly ready: Promise<unknown>,
  ) {
    this.clock = options.clock ?? backgroundClock;
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  push(delivery: Delivery): void {
    if (this.stopped) return;
    this.pending.push(delivery);
    // Deliveries of one socket read arrive in one turn: start once, at its end.
    if (this.pending.length === 1 && !this.retryTimer) queueMicrotask(() => this.kick());
  }

  /** Tries a batch the store failed now instead of at the next retry (the store came back). */
  retryNow(): void {
    if (!this.retryTimer) return;
    this.cancelRetry();
    this.kick();
  }

  /**
   * Numbers what is pending now; resolves when nothing is pending, or when the store failed
   * (the caller bounds how long it waits).
   */
  async drain(): Promise<void> {
    this.cancelRetry();
    while (!this.stopped && (this.running || this.pending.length > 0)) {
      if (!(await this.run())) return;
    }
  }

  /** The consumer is gone: what it delivered went back to RabbitMQ; nothing more is numbered. */
  stop(): void {
    this.stopped = true;
    this.pending = [];
    this.cancelRetry();
  }

  private cancelRetry(): void {
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
  }

  private kick(): void {
    background(this.run(), (error) => this.options.logger.error({ user: this.options.user, err: errorMessage(error) }, 'numbering failed'));
  }

  /** Runs the loop unless it runs already; resolves false when a batch failed. */
  private run(): Promise<boolean> {
    this.running ??= this.loop();
    return this.running;
  }

  /**
   * Numbers until nothing is pending. `running` is cleared in the same step that finds nothing
   * pending (not in a later reaction), so a push in between cannot find a loop that already ended.
   */
  private async loop(): Promise<boolean> {
    try {
      await this.ready.catch(() => undefined);
      while (this.pending.length > 0 && !this.stopped) {
        const batch = this.pending.splice(0, BATCH);
        const accepted: Decoded[] = [];
        for (const delivery of batch) {
          const decoded = decodeMessage(
            delivery.content,
            {
              messageId: delivery.messageId,
              contentType: delivery.contentType,
              timestamp: delivery.timestamp,
              headers: delivery.headers,
              topic: delivery.topic,
            },
            this.options.maxMessageBytes,
            Date.now(),
            { user: this.options.user, seal: this.options.replaySeal },
          );
          if (!decoded.ok) {
            this.options.onInvalid(delivery, decoded.reason, decoded.code, decoded.receiptFor);
            continue;
          }
          if (decoded.replayRefused !== undefined) this.options.onReplayRefused?.(delivery, decoded.replayRefused);
          accepted.push({
            delivery,
            id: decoded.key,
            fragment: decoded.fragment,
            ts: decoded.ts,
            receipt: decoded.receipt ? decoded.id : undefined,
          });
        }
        if (accepted.length === 0) continue;
        const { epoch, seen } = this.options.position();
        let assigned: Assigned[] | null;
        try {
          assigned = await this.options.store.assign(
            this.options.user,
            epoch,
            seen,
            accepted.map(({ id, fragment }) => ({ id, fragment })),
          );
          if (assigned !== null && assigned.length !== accepted.length) {
            throw new RelayError(ErrorCode.storeReply, `the store numbered ${assigned.length} of ${accepted.length} messages`);
          }
        } catch (error) {
          if (this.stopped) return false;
          this.pending.unshift(...accepted.map(({ delivery }) => delivery));
          // A reply that does not fit the request is a defect to look into; an outage is expected.
          const malformed = error instanceof RelayError && error.code === ErrorCode.storeReply;
          this.options.logger[malformed ? 'error' : 'warn'](
            { user: this.options.user, err: errorMessage(error) },
            'could not number deliveries; retrying',
          );
          this.options.onStoreHealth(false);
          this.scheduleRetry();
          return false;
        }
        if (this.stopped) return false;
        if (assigned === null) {
          this.stop();
          this.options.onEpochGone();
          return false;
        }
        const numbered = assigned;
        this.options.onNumbered(accepted.map((entry, index) => ({ ...entry, ...numbered[index]! })));
        this.options.onStoreHealth(true);
      }
      return true;
    } finally {
      this.running = undefined;
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, RETRY_MS);
  }
}
