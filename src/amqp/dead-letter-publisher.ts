/**
 * Publishes the relay's own dead letters (dead-letter-copy.ts) to `inbox.dlx`, on a confirm
 * channel of its own on the relay's publishing connection.
 *
 * This module guarantees: `publish` resolves only once RabbitMQ confirmed the copy and routed it
 * to at least one queue. A copy is published `mandatory`, so one that reaches no queue
 * (`inbox.dead` deleted or unbound) comes back and counts as refused: without it RabbitMQ would
 * confirm the copy and drop it, and the original would be acked on the strength of that confirm.
 * `publish` rejects with a RelayError:
 * - RELAY_ERR_PUBLISH_NACKED: RabbitMQ refused the copy (the channel is retired: the next copy
 *   goes on a new one, since a channel can keep refusing a quorum queue whose leader moved, see
 *   producer.ts), or returned it unrouted;
 * - RELAY_ERR_PUBLISH_TIMEOUT: no confirm within `timeoutMs` (the copy may still arrive);
 * - RELAY_ERR_BROKER_BLOCKED: at once while a resource alarm blocks publishing;
 * - RELAY_ERR_BROKER_UNAVAILABLE: no channel, or it closed before the confirm.
 * Callers keep the original unacked until `publish` resolved, and never ack it after a rejection.
 */
import type { Message } from 'amqplib';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import type { ConnectionPool } from './connection-pool.js';
import { PublishChannel, confirmFailure } from './publish-channel.js';
import { deadLetterCopyOptions, type CopySource, type DeadLetterLabel } from './dead-letter-copy.js';
import { DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER } from './topology.js';

/** Publishes a copy of `message` with its label; see DeadLetterPublisher. */
export type PublishDeadLetter = (message: CopySource, label: DeadLetterLabel) => Promise<void>;

export interface DeadLetterPublisherOptions {
  /** The relay's publishing pool (a resource alarm blocks it, not the consumers). */
  pool: ConnectionPool;
  /** PUBLISH_TIMEOUT_MS. */
  timeoutMs: number;
  /** Where copies go: `inbox.dlx` (tests use an exchange of their own). */
  exchange?: string;
}

interface Pending {
  key: string;
  returned: boolean;
}

/** What identifies a copy among those in flight: a returned message is matched back by it. */
function copyKey(messageId: unknown, reason: unknown, queue: unknown): string {
  return JSON.stringify([messageId ?? null, reason ?? null, queue ?? null]);
}

export class DeadLetterPublisher {
  private readonly channels: PublishChannel;
  /** Copies published and not yet confirmed, oldest first. */
  private readonly pending: Pending[] = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly options: DeadLetterPublisherOptions) {
    this.channels = new PublishChannel(options.pool, options.timeoutMs, (channel) =>
      channel.on('return', (message: Message) => this.onReturn(message)),
    );
  }

  /** Publishes a copy of `message` labelled with its reason (see the module comment). */
  readonly publish: PublishDeadLetter = async (message, label) => {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'dead-letter publisher is closed');
    const blocked = this.options.pool.blocked;
    if (blocked !== undefined) {
      throw new RelayError(ErrorCode.brokerBlocked, `RabbitMQ is blocking publishers (${blocked})`, { retryable: true });
    }
    const channel = await this.channels.current();
    const options = deadLetterCopyOptions(message.properties, label);
    const entry: Pending = { key: copyKey(options.messageId, label.reason, label.queue), returned: false };
    const { timeoutMs } = this.options;
    const exchange = this.options.exchange ?? DEAD_LETTER_EXCHANGE;
    this.pending.push(entry);
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new RelayError(ErrorCode.publishTimeout, `no confirm for a dead letter within ${timeoutMs} ms`, { retryable: true }));
        }, timeoutMs);
        try {
          // Routing key: the user, as RabbitMQ's own dead-lettering keeps the original's key.
          this.channels.published(channel);
          channel.publish(exchange, label.user ?? label.queue, message.content, { ...options, mandatory: true }, (error) => {
            clearTimeout(timer);
            this.channels.settled(channel);
            const failure = error ? confirmFailure(error, 'the dead letter') : undefined;
            if (failure?.code === ErrorCode.publishNacked) this.channels.retire(channel);
            // RabbitMQ sends basic.return before the confirm of the same message: `returned` is set by now.
            if (failure) reject(failure);
            else if (entry.returned) reject(new RelayError(ErrorCode.publishNacked, `no queue is bound to ${exchange}`));
            else resolve();
          });
        } catch (error) {
          clearTimeout(timer);
          this.channels.settled(channel);
          reject(new RelayError(ErrorCode.brokerUnavailable, `cannot publish a dead letter: ${errorMessage(error)}`, { cause: error }));
        }
      });
    } finally {
      const index = this.pending.indexOf(entry);
      if (index >= 0) this.pending.splice(index, 1);
    }
  };

  /** A copy came back unrouted: the oldest copy in flight with its key was the one. */
  private onReturn(message: Message): void {
    const headers = message.properties.headers ?? {};
    const key = copyKey(message.properties.messageId, headers[DEAD_LETTER_REASON_HEADER], headers[DEAD_LETTER_QUEUE_HEADER]);
    const entry = this.pending.find((candidate) => candidate.key === key && !candidate.returned);
    if (entry) entry.returned = true;
  }

  /** Closes the channel (not the pool, which belongs to the caller). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.channels.close();
    return this.closing;
  }
}
