/**
 * Publishes delivery receipts (src/delivery/delivery-receipt.ts) to `inbox.receipts`, routing key
 * = the user id, on a confirm channel of its own on the relay's publishing connection; each
 * receipt names this node (NODE_ID).
 *
 * This module guarantees: `publish` resolves only once RabbitMQ confirmed every receipt of the
 * batch. The receipts of one batch are published back to back and their confirms awaited
 * together: a burst costs one confirm round trip. Not `mandatory`: a receipt for a user nobody
 * subscribed to routes nowhere, and RabbitMQ's confirm of it is the whole answer. `publish`
 * rejects with a RelayError (the caller keeps the messages unacked and tries again):
 * - RELAY_ERR_PUBLISH_NACKED: RabbitMQ refused a receipt (the channel is retired: the next batch
 *   goes on a new one, since a channel can keep refusing a quorum queue whose leader moved, see
 *   producer.ts);
 * - RELAY_ERR_PUBLISH_TIMEOUT: no channel opened, or not every confirm came, within `timeoutMs`
 *   (the channel is dropped: a later batch opens a new one);
 * - RELAY_ERR_BROKER_BLOCKED: at once while a resource alarm blocks publishing;
 * - RELAY_ERR_BROKER_UNAVAILABLE: no channel, or it closed before the confirms.
 */
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import { encodeReceipt, type ReceiptRequest, type ReceiptSink } from '../delivery/delivery-receipt.js';
import type { ConnectionPool } from './connection-pool.js';
import { PublishChannel, confirmFailure } from './publish-channel.js';
import { RECEIPTS_EXCHANGE } from './topology.js';

export interface ReceiptPublisherOptions {
  /** The relay's publishing pool (a resource alarm blocks it, not the consumers). */
  pool: ConnectionPool;
  /** PUBLISH_TIMEOUT_MS: for the whole batch. */
  timeoutMs: number;
  /** NODE_ID, written in every receipt. */
  nodeId: string;
  /** Where receipts go: `inbox.receipts` (tests may use an exchange of their own). */
  exchange?: string;
}

export class ReceiptPublisher implements ReceiptSink {
  private readonly channels: PublishChannel;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ReceiptPublisherOptions) {
    this.channels = new PublishChannel(options.pool, options.timeoutMs);
  }

  /** Publishes the batch; resolves once RabbitMQ confirmed every receipt (see the module comment). */
  async publish(receipts: readonly ReceiptRequest[]): Promise<void> {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'receipt publisher is closed');
    if (receipts.length === 0) return;
    const blocked = this.options.pool.blocked;
    if (blocked !== undefined) {
      throw new RelayError(ErrorCode.brokerBlocked, `RabbitMQ is blocking publishers (${blocked})`, { retryable: true });
    }
    // Opening the channel is bounded too: on a connection that went silent it would never answer.
    let opening: NodeJS.Timeout | undefined;
    const channel = await Promise.race([
      this.channels.current(),
      new Promise<never>((_, reject) => {
        opening = setTimeout(() => {
          reject(
            new RelayError(ErrorCode.publishTimeout, `no channel for delivery receipts within ${this.options.timeoutMs} ms`, {
              retryable: true,
            }),
          );
        }, this.options.timeoutMs);
      }),
    ]).finally(() => clearTimeout(opening));
    const exchange = this.options.exchange ?? RECEIPTS_EXCHANGE;
    const confirms = receipts.map(
      (receipt) =>
        new Promise<void>((resolve, reject) => {
          try {
            const body = encodeReceipt({ ...receipt, node: this.options.nodeId });
            const properties = { persistent: true, contentType: 'application/json', messageId: receipt.messageId, timestamp: receipt.at };
            this.channels.published(channel);
            channel.publish(exchange, receipt.user, body, properties, (error) => {
              this.channels.settled(channel);
              if (!error) return resolve();
              const failure = confirmFailure(error, 'a delivery receipt');
              if (failure.code === ErrorCode.publishNacked) this.channels.retire(channel);
              reject(failure);
            });
          } catch (error) {
            this.channels.settled(channel);
            reject(
              new RelayError(ErrorCode.brokerUnavailable, `cannot publish a delivery receipt: ${errorMessage(error)}`, { cause: error }),
            );
          }
        }),
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // A channel that does not confirm may sit on a connection that went silent: start again on a new one.
        this.channels.discard(channel);
        reject(
          new RelayError(ErrorCode.publishTimeout, `no confirm for delivery receipts within ${this.options.timeoutMs} ms`, {
            retryable: true,
          }),
        );
      }, this.options.timeoutMs);
    });
    try {
      await Promise.race([Promise.all(confirms), timeout]);
    } finally {
      clearTimeout(timer);
      // The rejections of the other confirms of a failed batch are the same story: already told.
      for (const confirm of confirms) confirm.catch(() => undefined);
    }
  }

  /** Closes the channel (not the pool, which belongs to the caller). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.channels.close();
    return this.closing;
  }
}
