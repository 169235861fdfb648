/**
 * The one confirm channel a producer publishes on, opened on first use and replaced when it goes.
 *
 * This module guarantees:
 * - `current()` gives the open channel, or opens one (on the pool's connection) when there is none
 *   or the last one closed;
 * - `drop()` forgets the channel and closes it without waiting for its answer (on a connection a
 *   resource alarm blocks, or that went silent, the answer may never come): publishes still in
 *   flight on it fail as a lost channel;
 * - `retire(channel)` forgets that channel, if it is still the current one, but lets the confirms of what was published on it come in
 *   first: it closes once none is outstanding, or after `retireAfterMs` at the latest;
 * - `discard(channel)` forgets that channel, if it is still the current one, and closes it at
 *   once (one that went silent);
 * - `published` / `settled` count one publish's confirm; every `published` must be followed by
 *   exactly one `settled` (on the confirm, the refusal, or the error).
 */
import type { ConfirmChannel } from 'amqplib';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import type { ConnectionPool } from './connection-pool.js';

/**
 * The RelayError for a failed confirm of `what` (`a delivery receipt`): amqplib fails a confirm
 * callback with "message nacked" on a refusal (RELAY_ERR_PUBLISH_NACKED), and with another error
 * when the channel ended first (RELAY_ERR_BROKER_UNAVAILABLE). Both are worth another try.
 */
export function confirmFailure(error: unknown, what: string, refusalHint = ''): RelayError {
  if (errorMessage(error) === 'message nacked') {
    return new RelayError(ErrorCode.publishNacked, `RabbitMQ refused ${what}${refusalHint}`, { cause: error, retryable: true });
  }
  return new RelayError(ErrorCode.brokerUnavailable, `no confirm for ${what}: ${errorMessage(error)}`, { cause: error, retryable: true });
}

export class PublishChannel {
  private channel: Promise<ConfirmChannel> | undefined;
  /** What `channel` resolved to, once it did. */
  private opened: ConfirmChannel | undefined;
  /** Publishes awaiting their confirm, per channel. */
  private readonly unconfirmed = new Map<ConfirmChannel, number>();
  /** Channels retired, closed once their confirms are in. */
  private readonly retiring = new Set<ConfirmChannel>();

  constructor(
    private readonly pool: ConnectionPool,
    private readonly retireAfterMs: number,
    /** Called with each channel opened, before anything is published on it. */
    private readonly onOpen: (channel: ConfirmChannel) => void = () => undefined,
  ) {}

  current(): Promise<ConfirmChannel> {
    if (!this.channel) {
      const opening = this.pool.openConfirmChannel();
      this.channel = opening;
      opening.then(
        (channel) => {
          this.onOpen(channel);
          if (this.channel === opening) this.opened = channel;
          channel.once('close', () => {
            if (this.channel === opening) this.forget();
          });
        },
        () => {
          if (this.channel === opening) this.channel = undefined;
        },
      );
    }
    return this.channel;
  }

  published(channel: ConfirmChannel): void {
    this.unconfirmed.set(channel, (this.unconfirmed.get(channel) ?? 0) + 1);
  }

  settled(channel: ConfirmChannel): void {
    const left = (this.unconfirmed.get(channel) ?? 1) - 1;
    if (left > 0) {
      this.unconfirmed.set(channel, left);
      return;
    }
    this.unconfirmed.delete(channel);
    if (this.retiring.has(channel)) this.closeRetired(channel);
  }

  async drop(): Promise<void> {
    const opening = this.channel;
    this.forget();
    const channel = await opening?.catch(() => undefined);
    channel?.close().catch(() => undefined);
  }

  discard(channel: ConfirmChannel): void {
    if (this.opened === channel) this.forget();
    this.retiring.delete(channel);
    this.unconfirmed.delete(channel);
    channel.close().catch(() => undefined);
  }

  retire(channel: ConfirmChannel): void {
    if (this.opened === channel) this.forget();
    if (this.retiring.has(channel)) return;
    if ((this.unconfirmed.get(channel) ?? 0) === 0) {
      channel.close().catch(() => undefined);
      return;
    }
    this.retiring.add(channel);
    const timer = setTimeout(() => this.closeRetired(channel), this.retireAfterMs);
    timer.unref();
  }

  /** Closes the current channel, awaiting RabbitMQ's answer, and every retired one. */
  async close(): Promise<void> {
    const channel = await this.channel?.catch(() => undefined);
    this.forget();
    await channel?.close().catch(() => undefined);
    for (const retired of [...this.retiring]) this.closeRetired(retired);
  }

  private forget(): void {
    this.channel = undefined;
    this.opened = undefined;
  }

  private closeRetired(channel: ConfirmChannel): void {
    if (!this.retiring.delete(channel)) return;
    this.unconfirmed.delete(channel);
    channel.close().catch(() => undefined);
  }
}
