/**
 * How one consumer's deliveries are settled on its channel: acks, and dead letters that explain
 * themselves. A dead letter is a copy published with the relay's reason (DeadLetterPublisher),
 * and the original is acked only once RabbitMQ confirmed the copy.
 *
 * This module guarantees:
 * - a delivery being dead-lettered is never acked before its copy is confirmed: a multiple ack
 *   that would cover its tag goes out as single acks of the other tags instead (the stream acks
 *   a burst as one multiple ack, inflight-ledger.ts, and a dead letter is settled later);
 * - when the copy is refused, returned unrouted or not confirmed in time, the original is
 *   rejected without requeue: RabbitMQ dead-letters it itself (`x-death` reason `rejected`,
 *   without the relay's reason), so a failed copy never loses the message nor holds it. Requeueing
 *   it instead would bring it straight back (the stream's dead-letter request is still in the
 *   store), in a loop for as long as publishing fails, and each round counts towards the quorum
 *   queue's delivery limit;
 * - nothing is sent on the channel once it ended (its tags name nothing any more): a dead letter
 *   whose channel ended first is neither acked nor rejected, and RabbitMQ delivers the message
 *   again. If its copy was confirmed by then, `inbox.dead` holds it twice (the relay rejects it
 *   again on redelivery, since the request stays in the store until the reject is done): a
 *   duplicate, never a loss;
 * - `settled()` resolves once every dead letter started before it was acked or rejected on the
 *   channel, or the channel ended.
 */
import type { MessageProperties } from 'amqplib';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { CopySource, DeadLetterLabel } from './dead-letter-copy.js';

/** The channel operations a settlement sends; each may throw once the channel is closed. */
export interface SettlementChannel {
  ack(tag: number, multiple: boolean): void;
  nack(tag: number, requeue: boolean): void;
}

/** How one dead letter went: a copy with the reason, or a plain reject because the copy failed. */
export interface DeadLetterOutcome {
  reason: string;
  copied: boolean;
}

export interface ConsumerSettlementOptions {
  channel: SettlementChannel;
  /** The queue consumed from (written on the copy). */
  queue: string;
  /** Whose queue it is. */
  user: string | undefined;
  publish: (message: CopySource, label: DeadLetterLabel) => Promise<void>;
  logger: Logger;
  now?: () => number;
  /** A dead letter was acked (copied) or rejected (the copy failed) on the channel. */
  onDeadLettered?: (outcome: DeadLetterOutcome) => void;
}

export class ConsumerSettlement {
  /** Deliveries neither acked nor being dead-lettered, by tag, in delivery order (tags grow). */
  private readonly unsettled = new Map<number, CopySource>();
  /** Dead letters whose copy is not confirmed yet, by tag. */
  private readonly deadLettering = new Map<number, Promise<void>>();
  private ended = false;

  constructor(private readonly options: ConsumerSettlementOptions) {}

  /**
   * A delivery arrived. Its body is copied: amqplib hands out a slice of the socket read, and
   * holding that slice until the message is acked would keep the whole read in memory.
   */
  received(tag: number, content: Buffer, properties: MessageProperties): void {
    this.unsettled.set(tag, { content: Buffer.from(content), properties });
  }

  /** Acks `tag` (and, with `multiple`, every earlier unsettled tag), never a dead letter in flight. */
  ack(tag: number, multiple: boolean): void {
    if (this.ended) return;
    if (!multiple) {
      this.unsettled.delete(tag);
      this.options.channel.ack(tag, false);
      return;
    }
    const covered: number[] = [];
    for (const unsettled of this.unsettled.keys()) if (unsettled <= tag) covered.push(unsettled);
    for (const covers of covered) this.unsettled.delete(covers);
    let holdsDeadLetter = false;
    for (const deadTag of this.deadLettering.keys()) if (deadTag < tag) holdsDeadLetter = true;
    if (!holdsDeadLetter) {
      this.options.channel.ack(tag, true);
      return;
    }
    for (const covers of covered) this.options.channel.ack(covers, false);
  }

  /** Returns `tag` to the queue (a nack with requeue). */
  requeue(tag: number): void {
    if (this.ended) return;
    this.unsettled.delete(tag);
    this.options.channel.nack(tag, true);
  }

  /**
   * Dead-letters `tag` with `reason`: publishes the copy, then acks the original, or rejects it
   * when the copy failed (see the module comment). Returns at once; `settled()` waits for it.
   */
  deadLetter(tag: number, reason: string): void {
    if (this.ended || this.deadLettering.has(tag)) return;
    const message = this.unsettled.get(tag);
    this.unsettled.delete(tag);
    const { queue, user, logger } = this.options;
    if (!message) {
      // Not delivered on this channel as far as the settlement knows: RabbitMQ's own reject is all there is.
      logger.warn({ user, tag, reason }, 'dead letter of an unknown delivery; rejected without the reason');
      this.finish(tag, reason, false);
      return;
    }
    const label: DeadLetterLabel = { reason, queue, user, at: (this.options.now ?? Date.now)() };
    const messageId = typeof message.properties.messageId === 'string' ? message.properties.messageId : undefined;
    const work = this.options.publish(message, label).then(
      () => this.finish(tag, reason, true),
      (error: unknown) => {
        logger.warn(
          { user, messageId, reason, err: errorMessage(error) },
          'could not publish the dead letter with its reason; rejecting it (x-death reason rejected)',
        );
        this.finish(tag, reason, false);
      },
    );
    this.deadLettering.set(tag, work);
  }

  private finish(tag: number, reason: string, copied: boolean): void {
    this.deadLettering.delete(tag);
    if (this.ended) return;
    try {
      if (copied) this.options.channel.ack(tag, false);
      else this.options.channel.nack(tag, false);
    } catch (error) {
      // The channel closed under it: RabbitMQ has the message back (see the module comment).
      this.options.logger.info({ user: this.options.user, reason, err: errorMessage(error) }, 'dead letter not settled: channel closed');
      return;
    }
    this.options.onDeadLettered?.({ reason, copied });
  }

  /** Resolves once every dead letter started so far is settled on the channel (or the channel ended). */
  async settled(): Promise<void> {
    await Promise.all(this.deadLettering.values());
  }

  /** Dead letters whose copy is not confirmed yet. */
  get deadLettersInFlight(): number {
    return this.deadLettering.size;
  }

  /** The channel ended: nothing more is sent on it. */
  end(): void {
    this.ended = true;
    this.unsettled.clear();
  }
}
