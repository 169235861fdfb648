/**
 * One confirm channel's publishing with the retries a producer needs: each publish is persistent
 * and resolves only once RabbitMQ confirmed it; on failure it rejects with a RelayError.
 *
 * This module guarantees:
 * - a publish whose channel or connection died before the confirm, or that timed out, is tried
 *   again on a new channel (on the next node, when its node went away) with the same properties
 *   (so the same messageId), `attempts` tries in all; the last error is reported;
 * - a refusal (a nack) is tried again on a new channel after each wait of `nackRetryDelaysMs`,
 *   then reported as RELAY_ERR_PUBLISH_NACKED. A nack is not only a full inbox: RabbitMQ 3.10 also
 *   refuses, on one channel, every publish to a quorum queue whose leader's node died while that
 *   channel first published to it, until the channel closes, while a new channel is accepted once
 *   a new leader is elected (the cluster tests show it). The refusing channel takes no new
 *   publishes and closes once its other confirms are in (PublishChannel.retire);
 * - a blocked broker (a resource alarm) fails at once with RELAY_ERR_BROKER_BLOCKED, never retried;
 * - `retried` counts the publishes tried more than once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, RelayError, errorMessage, isRelayError } from '../errors.js';
import type { Logger } from '../log.js';
import type { ConnectionPool } from './connection-pool.js';
import { PublishChannel, confirmFailure } from './publish-channel.js';

/** The default waits before the tries of a refused publish: 3.75 s in all, past a leader election. */
export const NACK_RETRY_DELAYS_MS: readonly number[] = [250, 500, 1000, 2000];

/** The AMQP properties of one publish (persistent is always set). */
export interface RawProperties {
  messageId: string;
  contentType?: string;
  timestamp?: number;
  headers?: Record<string, unknown>;
}

export interface ConfirmedPublisherOptions {
  pool: ConnectionPool;
  /** Tries in all of a publish that met a lost channel or a timeout. */
  attempts: number;
  /** The waits before each new try of a refused publish (ms); `[]`: the first refusal is reported. */
  nackRetryDelaysMs: readonly number[];
  publishTimeoutMs: number;
  logger: Logger;
  /** Runs before each try (the producer declares the user's inbox there). */
  beforePublish?: (exchange: string, routingKey: string) => Promise<void>;
}

export class ConfirmedPublisher {
  private readonly channels: PublishChannel;
  private retriedCount = 0;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: ConfirmedPublisherOptions) {
    this.channels = new PublishChannel(options.pool, options.publishTimeoutMs);
  }

  /** Publishes that were tried more than once. */
  get retried(): number {
    return this.retriedCount;
  }

  /**
   * Publishes bytes with the given properties to an exchange, persistent, awaiting the confirm:
   * see the module comment for what is tried again.
   */
  async publish(exchange: string, routingKey: string, body: Buffer, properties: RawProperties): Promise<void> {
    const { attempts, nackRetryDelaysMs: nackDelays } = this.options;
    let lost = 0;
    let refused = 0;
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.publishOnce(exchange, routingKey, body, properties);
        return;
      } catch (error) {
        if (this.closing || !isRelayError(error)) throw error;
        if (error.code === ErrorCode.publishNacked) {
          const delay = nackDelays[refused];
          if (delay === undefined) throw error;
          refused += 1;
          this.countRetry(attempt, routingKey, error);
          await sleep(delay);
          continue;
        }
        if (error.code !== ErrorCode.brokerUnavailable && error.code !== ErrorCode.publishTimeout) throw error;
        lost += 1;
        if (lost >= attempts) throw error;
        this.countRetry(attempt, routingKey, error);
        // A channel that timed out may sit on a connection that went silent: start on a new one.
        await this.channels.drop();
      }
    }
  }

  private countRetry(attempt: number, routingKey: string, error: RelayError): void {
    if (attempt === 1) this.retriedCount += 1;
    this.options.logger.warn({ routingKey, attempt, code: error.code, err: errorMessage(error) }, 'publish not confirmed; trying again');
  }

  private async publishOnce(exchange: string, routingKey: string, body: Buffer, properties: RawProperties): Promise<void> {
    const blocked = this.options.pool.blocked;
    if (blocked !== undefined) {
      throw new RelayError(ErrorCode.brokerBlocked, `RabbitMQ is blocking publishers (${blocked}); try again later`, { retryable: true });
    }
    await this.options.beforePublish?.(exchange, routingKey);
    const channel = await this.channels.current();
    const timeoutMs = this.options.publishTimeoutMs;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new RelayError(ErrorCode.publishTimeout, `no confirm from RabbitMQ within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      try {
        this.channels.published(channel);
        channel.publish(exchange, routingKey, body, { ...properties, persistent: true }, (error: unknown) => {
          clearTimeout(timer);
          this.channels.settled(channel);
          const failure = error ? confirmFailure(error, `the message for ${routingKey}`, ' (inbox full or queue unavailable)') : undefined;
          if (failure?.code === ErrorCode.publishNacked) {
            // The refusal may be the channel's alone (see the module comment): the next try goes on a new one.
            this.channels.retire(channel);
            reject(failure);
          } else if (failure) {
            // The channel closed before the confirm (its connection or node went away).
            reject(failure);
          } else {
            resolve();
          }
        });
      } catch (error) {
        clearTimeout(timer);
        this.channels.settled(channel);
        reject(new RelayError(ErrorCode.brokerUnavailable, `cannot publish: ${errorMessage(error)}`, { cause: error, retryable: true }));
      }
    });
  }

  /**
   * Publishes one message that goes nowhere (default exchange, no such queue), so that RabbitMQ
   * counts this connection as a publisher and tells it when a resource alarm blocks publishing
   * (it notifies only connections that have published). Then publishing fails fast from the
   * first message after an alarm instead of waiting for a confirm that cannot come.
   */
  async touch(): Promise<void> {
    const channel = await this.channels.current();
    await new Promise<void>((resolve) => {
      // Settles on the confirm, or after a while when a blocked connection holds it back.
      const timer = setTimeout(resolve, 30_000);
      timer.unref();
      channel.publish('', 'inbox-relay.publisher-probe', Buffer.alloc(0), {}, () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Closes the channels (not the pool). Idempotent; a publish retrying meanwhile reports its last error. */
  close(): Promise<void> {
    this.closing ??= this.channels.close();
    return this.closing;
  }
}
