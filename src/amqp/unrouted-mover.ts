/**
 * Moves messages that reached `inbox` before their user's queue existed (they land in the
 * `inbox.unrouted` queue through the alternate exchange): provisions the user's inbox,
 * republishes the message there with its properties (messageId included) and acks the original
 * only after RabbitMQ confirmed the copy. A routing key that is not a valid user id is
 * dead-lettered and logged, never used in a name. One message at a time, so order is kept.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { isValidUserId } from '../protocol/user-id.js';
import type { ConnectionPool } from './connection-pool.js';
import { INBOX_EXCHANGE, UNROUTED_QUEUE, provisionInbox, type QueueSettings } from './topology.js';

export interface UnroutedMoverOptions {
  pool: ConnectionPool;
  /** Publishes a copy with publisher confirms (the relay's producer, behind the broker breaker). */
  publish: (
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: { messageId: string; contentType?: string; timestamp?: number; headers?: Record<string, unknown> },
  ) => Promise<void>;
  settings: QueueSettings;
  logger: Logger;
  onMoved?: (user: string) => void;
  onDeadLettered?: (reason: string) => void;
}

export class UnroutedMover {
  private channel: Channel | undefined;
  private queue: Promise<void> = Promise.resolve();
  private stopped = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly provisioned = new Set<string>();

  constructor(private readonly options: UnroutedMoverOptions) {}

  async start(): Promise<void> {
    const channel = await this.options.pool.openChannel();
    this.channel = channel;
    channel.once('close', () => {
      if (this.channel === channel) this.channel = undefined;
      this.scheduleRestart();
    });
    await channel.prefetch(20, false);
    await channel.consume(UNROUTED_QUEUE, (message) => {
      if (message === null) {
        channel.close().catch(() => undefined);
        return;
      }
      this.queue = this.queue.then(() => this.move(channel, message));
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
      this.options.logger.warn({ reason: 'invalid user id in routing key' }, 'unroutable message dead-lettered');
      this.options.onDeadLettered?.('invalid-user-id');
      channel.nack(message, false, false);
      return;
    }
    try {
      if (!this.provisioned.has(user)) {
        await provisionInbox(() => this.options.pool.openChannel(), user, this.options.settings, {
          onQueueMismatch: (queue) => this.options.logger.warn({ queue }, 'queue exists with other arguments; using it as it is'),
        });
        if (this.provisioned.size > 100_000) this.provisioned.clear();
        this.provisioned.add(user);
      }
      const { properties } = message;
      await this.options.publish(INBOX_EXCHANGE, user, message.content, {
        messageId: typeof properties.messageId === 'string' ? properties.messageId : '',
        ...(typeof properties.contentType === 'string' ? { contentType: properties.contentType } : {}),
        ...(typeof properties.timestamp === 'number' ? { timestamp: properties.timestamp } : {}),
        ...(properties.headers ? { headers: properties.headers } : {}),
      });
      channel.ack(message);
      this.options.onMoved?.(user);
    } catch (error) {
      this.options.logger.warn({ user, err: errorMessage(error) }, 'could not move an unrouted message; it stays queued');
      // Hold the line: close the channel so this message and those behind it return in order.
      await channel.close().catch(() => undefined);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close().catch(() => undefined);
  }
}
