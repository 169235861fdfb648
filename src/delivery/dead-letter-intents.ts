/**
 * A user's requests to dead-letter messages (`nack` with `requeue:false`, or past the nack limit),
 * kept until RabbitMQ has taken each message into the dead-letter queue.
 *
 * This module guarantees:
 * - an intent outlives the client's later cumulative acks: the stream never acks a message with
 *   an intent to RabbitMQ (its ledger keeps it), it rejects it;
 * - an intent is written to the store (retried every second), so that it survives a lost channel,
 *   a relay restart and a move to another node: when RabbitMQ delivers the message again, the
 *   store's `assign` says so, and it is rejected then. The consumer that holds the message does
 *   not wait for the store: it rejects at once;
 * - an intent is cleared (here and in the store) only once a reject was followed by a round trip
 *   on the same channel (`ConsumerHandle.sync`): a reject sent on a channel that was already
 *   dead is not taken for done. One the store has not taken when the stream closes is handed to
 *   the user's next stream on this node (`unrecorded`, see DeadLetterHandover).
 */
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { SeqStore } from '../store/store.js';
import { backgroundClock, type Clock, type TimerHandle } from './background-clock.js';

export interface DeadLetterIntentsOptions {
  user: string;
  store: SeqStore;
  logger: Logger;
  clock?: Clock;
  /** The numbering intents are recorded in. */
  epoch(): string;
  /** The intent for `seq` is in the store: other nodes may be told (and the message rejected if held). */
  onStored(seq: number): void;
  /** History no longer holds `seq` (a client processed it): it is settled like any acked seq. */
  onDropped(seq: number): void;
  onEpochGone(): void;
}

interface Intent {
  reason: string;
  stored: boolean;
}

const RETRY_MS = 1_000;

export class DeadLetterIntents {
  private readonly intents = new Map<number, Intent>();
  private readonly retries = new Map<number, TimerHandle>();
  private stopped = false;
  private readonly clock: Clock;

  constructor(private readonly options: DeadLetterIntentsOptions) {
    this.clock = options.clock ?? backgroundClock;
  }

  get size(): number {
    return this.intents.size;
  }

  has(seq: number): boolean {
    return this.intents.has(seq);
  }

  /**
   * The highest acked mark the store may be given now: below the lowest request it does not hold
   * yet. A stream that starts from the store's mark (after a restart) would otherwise take that
   * message for processed and ack it.
   */
  markCeiling(): number {
    let lowest = Infinity;
    for (const [seq, intent] of this.intents) if (!intent.stored && seq < lowest) lowest = seq;
    return lowest - 1;
  }

  reason(seq: number): string {
    return this.intents.get(seq)?.reason ?? 'client-nack';
  }

  /** Whether the store holds the intent for `seq`. */
  isStored(seq: number): boolean {
    return this.intents.get(seq)?.stored === true;
  }

  /** The intents the store does not hold yet, lowest seq first (for the user's next stream). */
  unrecorded(): { seq: number; reason: string }[] {
    return [...this.intents]
      .filter(([, intent]) => !intent.stored)
      .map(([seq, { reason }]) => ({ seq, reason }))
      .sort((a, b) => a.seq - b.seq);
  }

  /** A client asked to dead-letter `seq`: the intent is written to the store (retried until it is). */
  add(seq: number, reason: string): void {
    if (this.intents.has(seq)) return;
    this.intents.set(seq, { reason, stored: false });
    this.persist(seq);
  }

  /** The store reported an intent for `seq` (recorded before a restart or on another node). */
  known(seq: number, reason = 'client-nack'): void {
    const intent = this.intents.get(seq);
    if (intent) intent.stored = true;
    else this.intents.set(seq, { reason, stored: true });
  }

  /** RabbitMQ took the message (a reject followed by a round trip on its channel): forget it. */
  done(seq: number): void {
    if (!this.intents.delete(seq)) return;
    this.cancelRetry(seq);
    background(this.options.store.deadLettered(this.options.user, this.options.epoch(), [seq]), (error: unknown) =>
      // The message is in the dead-letter queue; a stale intent only matters if the same message
      // id is published again (a replay has its own key), so this is not retried.
      this.options.logger.warn({ user: this.options.user, seq, err: errorMessage(error) }, 'could not clear a dead-letter intent'),
    );
  }

  /** Stops retrying writes (the stream closes); what the store holds stays there. */
  stop(): void {
    this.stopped = true;
    for (const seq of [...this.retries.keys()]) this.cancelRetry(seq);
  }

  private cancelRetry(seq: number): void {
    this.retries.get(seq)?.cancel();
    this.retries.delete(seq);
  }

  private persist(seq: number): void {
    const { store, user, logger } = this.options;
    background(
      store.deadLetter(user, this.options.epoch(), seq).then((recorded) => {
        const intent = this.intents.get(seq);
        if (!intent || this.stopped) return;
        if (recorded === null) return this.options.onEpochGone();
        if (!recorded) {
          this.intents.delete(seq);
          return this.options.onDropped(seq);
        }
        intent.stored = true;
        this.options.onStored(seq);
      }),
      (error: unknown) => {
        if (this.stopped || !this.intents.has(seq)) return;
        logger.warn({ user, seq, err: errorMessage(error) }, 'could not record a dead-letter intent; retrying');
        this.retries.set(
          seq,
          this.clock.setTimeout(() => {
            this.retries.delete(seq);
            this.persist(seq);
          }, RETRY_MS),
        );
      },
    );
  }
}
