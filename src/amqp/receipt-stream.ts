/**
 * The producer's side of delivery receipts: a durable queue the producer owns, bound to
 * `inbox.receipts` (one binding per user id, or `#` for every user), read as an async iterator.
 *
 * This module guarantees:
 * - a receipt is acked to RabbitMQ only when the loop asks for the next one: the receipt the loop
 *   holds when it breaks out, throws, is closed from outside (`close()`) or its process dies is
 *   still in the queue and comes again (at least once, as the relay publishes it); `next()` calls
 *   made at once are answered in turn, each acking the receipt handed out before it;
 * - breaking out of the loop (or `return()`, `close()`) cancels the consumer and closes its
 *   channel, also when it comes while the queue is still being declared: every receipt RabbitMQ
 *   had handed over and the loop did not take yet goes back to the queue;
 * - bindings add up: a queue bound for every user (`#`) once, or for other users by an earlier
 *   `receipts()`, keeps those bindings until its owner unbinds them or deletes the queue;
 * - only valid receipts are yielded (parseReceipt); anything else in the queue is acked and
 *   skipped, and counted in `skipped`, so that one bad message cannot stop the loop for ever;
 * - the queue holds the receipts published once its bindings exist: from when `ready()` (or the
 *   first `next()`) resolved, and for ever after, while the queue lives. A receipt published
 *   before routes nowhere (`inbox.receipts` has no alternate exchange): await `ready()` before the
 *   first publish whose receipt matters;
 * - a lost channel or a consumer the broker cancelled (the queue was deleted) ends the loop with
 *   a RelayError `RELAY_ERR_BROKER_UNAVAILABLE`: call `receipts()` again to go on, from the
 *   receipts still in the queue.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { QueueType } from '../config.js';
import { parseReceipt, type DeliveryReceipt } from '../delivery/delivery-receipt.js';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import { isValidUserId } from '../protocol/user-id.js';
import { RECEIPTS_EXCHANGE } from './topology.js';

export interface ReceiptsOptions {
  /** The durable queue the receipts collect in, the producer's own; declared when missing. */
  queue: string;
  /**
   * The users whose receipts to bind the queue for (one binding each, at least one user); default:
   * every user's (binding `#`). Bindings the queue has already stay (see the module comment).
   */
  users?: readonly string[];
  /** How many receipts RabbitMQ hands over ahead of the loop (default 100). */
  prefetch?: number;
  /** The queue's type when it is declared (default `quorum`); an existing queue must match. */
  queueType?: QueueType;
}

const DEFAULT_PREFETCH = 100;

/** A delivery, why the stream failed, or `end` (closed by the caller). */
type Next = ConsumeMessage | RelayError | 'end';

/** Checks the options before anything is declared. */
function checkOptions(options: ReceiptsOptions): void {
  const { queue } = options;
  if (queue.length === 0 || Buffer.byteLength(queue) > 255 || queue.startsWith('amq.') || queue.startsWith('inbox.') || queue === 'inbox') {
    throw new RelayError(
      ErrorCode.topology,
      `receipts queue ${JSON.stringify(queue)}: 1-255 bytes, not starting with amq. (the broker's) or inbox. (the relay's)`,
    );
  }
  if (options.users !== undefined && options.users.length === 0) {
    throw new RelayError(ErrorCode.invalidUserId, 'users: name at least one user, or leave it out for every user');
  }
  const bad = options.users?.find((user) => !isValidUserId(user));
  if (bad !== undefined)
    throw new RelayError(ErrorCode.invalidUserId, `user id ${JSON.stringify(bad)} must be 1-128 characters of [A-Za-z0-9._:@-]`);
}

/** Delivery receipts from a queue of the producer's, as an async iterator (see the module comment). */
export class ReceiptStream implements AsyncIterableIterator<DeliveryReceipt> {
  private setup: Promise<void> | undefined;
  private channel: Channel | undefined;
  private consumerTag: string | undefined;
  private readonly arrived: Next[] = [];
  private waiter: ((next: Next) => void) | undefined;
  /** The receipt the loop holds: acked when it asks for the next one. */
  private holding: ConsumeMessage | undefined;
  private finished = false;
  private skippedCount = 0;
  /** The `next()` calls in order: each runs once the one before it answered. */
  private turns: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly openChannel: () => Promise<Channel>,
    private readonly options: ReceiptsOptions,
  ) {
    checkOptions(options);
  }

  /** Messages in the queue that were not valid receipts (acked and skipped). */
  get skipped(): number {
    return this.skippedCount;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /**
   * Declares the queue and its bindings and starts consuming (once; `next()` does it too).
   * Rejects with RELAY_ERR_TOPOLOGY when the queue cannot be declared or bound (one that exists
   * with another type, say).
   */
  async ready(): Promise<void> {
    if (this.finished && !this.setup) throw new RelayError(ErrorCode.closed, 'the receipt stream is closed');
    await (this.setup ??= this.start());
  }

  /** Acks the receipt handed out last, then waits for the next one (calls made at once are answered in turn). */
  next(): Promise<IteratorResult<DeliveryReceipt, undefined>> {
    const turn = this.turns.then(() => this.nextInTurn());
    this.turns = turn.then(
      () => undefined,
      () => undefined,
    );
    return turn;
  }

  private async nextInTurn(): Promise<IteratorResult<DeliveryReceipt, undefined>> {
    if (this.finished) return { done: true, value: undefined };
    await this.ready();
    this.ackHeld();
    for (;;) {
      const next = this.arrived.shift() ?? (await new Promise<Next>((resolve) => (this.waiter = resolve)));
      if (next === 'end' || this.finished) return { done: true, value: undefined };
      if (next instanceof RelayError) {
        await this.end();
        throw next;
      }
      const parsed = parseReceipt(next.content);
      if (parsed.ok) {
        this.holding = next;
        return { done: false, value: parsed.receipt };
      }
      this.skippedCount += 1;
      this.ack(next);
    }
  }

  /** The loop ended early: the receipt it held and those not taken yet stay in the queue. */
  async return(): Promise<IteratorResult<DeliveryReceipt, undefined>> {
    this.holding = undefined;
    await this.end();
    return { done: true, value: undefined };
  }

  /** Stops reading; receipts not acked stay in the queue. Idempotent. */
  async close(): Promise<void> {
    await this.return();
  }

  private async start(): Promise<void> {
    const { queue, users, prefetch = DEFAULT_PREFETCH, queueType = 'quorum' } = this.options;
    const channel = await this.openChannel();
    this.channel = channel;
    channel.once('close', () => this.push(new RelayError(ErrorCode.brokerUnavailable, 'the receipts channel closed', { retryable: true })));
    try {
      await channel.assertExchange(RECEIPTS_EXCHANGE, 'topic', { durable: true });
      await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': queueType } });
      for (const key of users ?? ['#']) await channel.bindQueue(queue, RECEIPTS_EXCHANGE, key);
      await channel.prefetch(prefetch, false);
      const { consumerTag } = await channel.consume(
        queue,
        (message) => {
          this.push(
            message ??
              new RelayError(ErrorCode.brokerUnavailable, `the broker cancelled the receipts consumer of ${queue}`, { retryable: true }),
          );
        },
        { noAck: false },
      );
      this.consumerTag = consumerTag;
    } catch (error) {
      this.finished = true;
      await channel.close().catch(() => undefined);
      throw new RelayError(ErrorCode.topology, `cannot read receipts from ${queue}: ${errorMessage(error)}`, {
        cause: error,
        retryable: true,
      });
    }
  }

  private push(next: Next): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    if (waiter) waiter(next);
    else this.arrived.push(next);
  }

  private ackHeld(): void {
    const held = this.holding;
    this.holding = undefined;
    if (held) this.ack(held);
  }

  private ack(message: ConsumeMessage): void {
    try {
      this.channel?.ack(message);
    } catch {
      // The channel is gone: RabbitMQ has the receipt back and hands it over again (a duplicate).
    }
  }

  private async end(): Promise<void> {
    if (this.finished) return;
    this.finished = true;
    this.arrived.length = 0;
    // A `next()` waiting now (the caller closed the stream from outside the loop) ends the loop.
    this.push('end');
    // Still declaring: let it finish, then cancel what it started (else its consumer would live on).
    await this.setup?.catch(() => undefined);
    const channel = this.channel;
    if (!channel) return;
    if (this.consumerTag !== undefined) await channel.cancel(this.consumerTag).catch(() => undefined);
    await channel.close().catch(() => undefined);
  }
}
