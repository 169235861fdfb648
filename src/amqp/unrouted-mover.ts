/**
 * Moves messages that reached `inbox` before their user's queue existed (they land in the
 * `inbox.unrouted` queue through the alternate exchange): provisions the user's inbox,
 * republishes the message there with its properties (messageId included) and acks the original
 * only after RabbitMQ confirmed the copy. One message at a time, so order is kept.
 *
 * This module guarantees:
 * - no message is lost: each is acked only after RabbitMQ confirmed its copy (in the inbox, or
 *   in the dead-letter exchange); anything not acked returns to `inbox.unrouted` in order when
 *   the mover's channel closes;
 * - a routing key that is not a valid user id is dead-lettered (`x-inbox-relay-reason` =
 *   `invalid-user-id`) and logged, never used in a name;
 * - inboxes are declared at most `provisionRatePerSec` a second, and that many at once (a token
 *   bucket): a message whose inbox would go past the cap waits, unacked, with those behind it,
 *   and `onProvisionWait` says so. Producers that publish to made-up user ids cannot make the
 *   broker create queues faster than that;
 * - a copy RabbitMQ refuses (negative confirm: the user's inbox is full, `x-max-length` with
 *   `reject-publish`) dead-letters that one message, with `x-inbox-relay-reason` =
 *   `unroutable-inbox-full` and `x-inbox-relay-user`, and the mover goes on with the next; one
 *   full inbox does not stall every user behind it. Any other failure (no confirm, a broker
 *   alarm, a lost channel, a dead letter that could not be published) is the broker's, not the
 *   message's: the mover closes its channel, so this message and those behind it return in
 *   order, and starts again a second later.
 * Dead letters are copies published to `inbox.dlx` (dead-letter-copy.ts), confirmed and routed
 * before the original is acked (DeadLetterPublisher). A dead letter for a valid user whose
 * producer asked for a delivery receipt gets its `dead-lettered` receipt (no seq: it was never
 * numbered) confirmed before the copy is published.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { backgroundClock, type Clock, type TimerHandle } from '../delivery/background-clock.js';
import { ErrorCode, errorMessage, isRelayError } from '../errors.js';
import type { Logger } from '../log.js';
import { TokenBucket } from '../overload/token-bucket.js';
import { isValidUserId } from '../protocol/user-id.js';
import type { ConnectionPool } from './connection-pool.js';
import { DeadLetterReason } from './dead-letter-copy.js';
import type { PublishDeadLetter } from './dead-letter-publisher.js';
import { asksForReceipt, type ReceiptSink } from '../delivery/delivery-receipt.js';
import { isValidMessageId } from '../delivery/message-codec.js';
import { INBOX_EXCHANGE, UNROUTED_QUEUE, provisionInbox, type QueueSettings } from './topology.js';

/** The reason a message is dead-lettered with when its user's inbox refuses the copy. */
export const INBOX_FULL_REASON = DeadLetterReason.unroutableInboxFull;

export interface UnroutedMoverOptions {
  pool: ConnectionPool;
  /**
   * Publishes a copy with publisher confirms (the relay's producer, behind the broker breaker).
   * Rejects with RELAY_ERR_PUBLISH_NACKED when RabbitMQ refused it.
   */
  publish: (
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: { messageId: string; contentType?: string; timestamp?: number; headers?: Record<string, unknown> },
  ) => Promise<void>;
  /** Publishes a dead letter with its reason (DeadLetterPublisher); resolves once confirmed and routed. */
  publishDeadLetter: PublishDeadLetter;
  /** Where delivery receipts go; undefined: none is sent. */
  receipts?: ReceiptSink | undefined;
  settings: QueueSettings;
  /** Inboxes declared per second, and at once (UNROUTED_PROVISION_RATE_PER_SEC). */
  provisionRatePerSec: number;
  logger: Logger;
  clock?: Clock;
  /** The queue moved from: `inbox.unrouted` (tests move from a queue of their own). */
  queue?: string;
  onMoved?: (user: string) => void;
  onDeadLettered?: (reason: string) => void;
  /** An inbox was declared for `user`. */
  onProvisioned?: (user: string) => void;
  /** The next declaration waits `ms` for the cap; the message and those behind it stay queued. */
  onProvisionWait?: (ms: number) => void;
}

type CopyProperties = Parameters<UnroutedMoverOptions['publish']>[3];

function copyProperties(message: ConsumeMessage): CopyProperties {
  const { properties } = message;
  const headers: unknown = properties.headers;
  return {
    messageId: typeof properties.messageId === 'string' ? properties.messageId : '',
    ...(typeof properties.contentType === 'string' ? { contentType: properties.contentType } : {}),
    ...(typeof properties.timestamp === 'number' ? { timestamp: properties.timestamp } : {}),
    ...(typeof headers === 'object' && headers !== null ? { headers: headers as Record<string, unknown> } : {}),
  };
}

export class UnroutedMover {
  private channel: Channel | undefined;
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly provisioned = new Set<string>();
  private readonly clock: Clock;
  private readonly bucket: TokenBucket;
  /** Set while a declaration waits for the cap: ends the wait early on stop. */
  private capWait: { timer: TimerHandle; done: () => void } | undefined;

  constructor(private readonly options: UnroutedMoverOptions) {
    this.clock = options.clock ?? backgroundClock;
    this.bucket = new TokenBucket(options.provisionRatePerSec, Math.max(1, options.provisionRatePerSec), this.clock.now());
  }

  async start(): Promise<void> {
    const channel = await this.options.pool.openChannel();
    this.channel = channel;
    channel.once('close', () => {
      if (this.channel === channel) this.channel = undefined;
      this.scheduleRestart();
    });
    await channel.prefetch(20, false);
    await channel.consume(this.options.queue ?? UNROUTED_QUEUE, (message) => {
      if (message === null) {
        channel.close().catch(() => undefined);
        return;
      }
      this.queue = this.queue.then(() =>
        this.move(channel, message).catch((error: unknown) => this.holdTheLine(channel, message.fields.routingKey, error)),
      );
    });
  }

  private scheduleRestart(): void {
    if (this.stopped || this.restartTimer) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.start().catch((error: unknown) => {
        this.options.logger.warn({ err: errorMessage(error) }, 'unrouted mover restart failed');
        this.scheduleRestart();
      });
    }, 1_000);
    this.restartTimer.unref();
  }

  private async move(channel: Channel, message: ConsumeMessage): Promise<void> {
    if (channel !== this.channel) return;
    const user = message.fields.routingKey;
    if (!isValidUserId(user)) {
      await this.deadLetter(channel, message, undefined, DeadLetterReason.invalidUserId);
      return;
    }
    if (!this.provisioned.has(user)) {
      // Stopped or the channel went while waiting: RabbitMQ has the message back.
      if (!(await this.provisionSlot(channel))) return;
      await provisionInbox(() => this.options.pool.openChannel(), user, this.options.settings, {
        onQueueMismatch: (queue) => this.options.logger.warn({ queue }, 'queue exists with other arguments; using it as it is'),
      });
      this.options.onProvisioned?.(user);
      if (this.provisioned.size > 100_000) this.provisioned.clear();
      this.provisioned.add(user);
    }
    try {
      await this.options.publish(INBOX_EXCHANGE, user, message.content, copyProperties(message));
    } catch (error) {
      if (!isRelayError(error, ErrorCode.publishNacked)) throw error;
      await this.deadLetter(channel, message, user, INBOX_FULL_REASON);
      return;
    }
    channel.ack(message);
    this.options.onMoved?.(user);
  }

  /**
   * Publishes the message to the dead-letter exchange with the reason and its user (none for an
   * invalid user id), then acks the original: it ends in `inbox.dead`, where `inbox-relay dlq
   * replay` finds its user. A copy that fails throws: the mover holds the line (see above).
   */
  private async deadLetter(channel: Channel, message: ConsumeMessage, user: string | undefined, reason: string): Promise<void> {
    const queue = this.options.queue ?? UNROUTED_QUEUE;
    const { messageId } = message.properties as { messageId?: unknown };
    const at = this.clock.now();
    if (this.options.receipts && user !== undefined && isValidMessageId(messageId) && asksForReceipt(message.properties.headers)) {
      await this.options.receipts.publish([{ messageId, user, seq: null, epoch: null, outcome: 'dead-lettered', reason, at }]);
    }
    await this.options.publishDeadLetter(message, { reason, queue, user, at });
    if (channel !== this.channel) return;
    channel.ack(message);
    this.options.onDeadLettered?.(reason);
    this.options.logger.warn({ user, reason }, 'unrouted message dead-lettered');
  }

  /**
   * Resolves true once an inbox may be declared (a token taken), false when the mover stopped or
   * the channel changed while it waited.
   */
  private async provisionSlot(channel: Channel): Promise<boolean> {
    for (;;) {
      if (this.stopped || channel !== this.channel) return false;
      const now = this.clock.now();
      if (this.bucket.take(now)) return true;
      const waitMs = Math.max(1, this.bucket.msUntilTokenAt(now));
      this.options.onProvisionWait?.(waitMs);
      this.options.logger.debug({ waitMs }, 'unrouted mover waits for UNROUTED_PROVISION_RATE_PER_SEC');
      await new Promise<void>((resolve) => {
        const done = () => {
          this.capWait = undefined;
          resolve();
        };
        this.capWait = { timer: this.clock.setTimeout(done, waitMs), done };
      });
    }
  }

  /** A failure that is not the message's: this message and those behind it return, in order, and the mover starts again. */
  private async holdTheLine(channel: Channel, user: string, error: unknown): Promise<void> {
    const valid = isValidUserId(user) ? user : undefined;
    this.options.logger.warn({ user: valid, err: errorMessage(error) }, 'could not move an unrouted message; it stays queued');
    await channel.close().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.capWait) {
      this.capWait.timer.cancel();
      this.capWait.done();
    }
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close().catch(() => undefined);
  }
}
