/**
 * The producer library: publishes one message to a user's inbox and resolves only once RabbitMQ
 * confirmed it (persistent, publisher confirms, a unique messageId). Rejects with a RelayError:
 * `RELAY_ERR_PUBLISH_NACKED` when the broker refused it (the inbox is full: its length limit
 * rejects new messages instead of dropping old ones), `RELAY_ERR_BROKER_BLOCKED` at once while a
 * resource alarm blocks publishing, `RELAY_ERR_PUBLISH_TIMEOUT` when no confirm came in time.
 * `publish` never sets a header of the relay and its operators (`x-inbox-relay-*`, such as the
 * replay mark of dead letters): it refuses a message that asks for one.
 */
import { randomUUID } from 'node:crypto';
import type { ConfirmChannel } from 'amqplib';
import { DEFAULTS } from '../config.js';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { isValidUserId } from '../protocol/user-id.js';
import { ConnectionPool } from './connection-pool.js';
import { INBOX_EXCHANGE, RESERVED_HEADER_PREFIX, provisionInbox, type QueueSettings } from './topology.js';

export interface ProducerOptions {
  url: string;
  /** With these, each user's inbox is declared before the first publish to it, so that no message takes the unrouted path. */
  provision?: QueueSettings;
  publishTimeoutMs?: number;
  logger?: Logger;
  /** Share a pool instead of opening a connection of its own (the relay does). */
  pool?: ConnectionPool;
  /** The AMQP connection name RabbitMQ shows (default: inbox-relay producer). */
  connectionName?: string;
}

export interface PublishOptions {
  /** The idempotency key; a random UUID when not given. */
  messageId?: string;
  /** Default: application/json for values, application/octet-stream for bytes. */
  contentType?: string;
  /** Milliseconds since the epoch; default: now. */
  timestamp?: number;
  /** Not delivered to clients. Names starting with `x-inbox-relay-` are the relay's: refused (RELAY_ERR_INVALID_MESSAGE). */
  headers?: Record<string, unknown>;
}

export interface PublishReceipt {
  messageId: string;
}

function encode(data: unknown, contentType: string | undefined): { body: Buffer; contentType: string } {
  if (data instanceof Uint8Array) return { body: Buffer.from(data), contentType: contentType ?? 'application/octet-stream' };
  const text = JSON.stringify(data);
  if (text === undefined) throw new RelayError(ErrorCode.invalidMessage, 'data cannot be encoded as JSON');
  return { body: Buffer.from(text), contentType: contentType ?? 'application/json' };
}

/** Refuses the relay's own headers: the replay mark, for one, is the operator's alone (docs/PROTOCOL.md 2.6). */
function checkHeaders(headers: Record<string, unknown> | undefined): void {
  const reserved = Object.keys(headers ?? {}).find((name) => name.toLowerCase().startsWith(RESERVED_HEADER_PREFIX));
  if (reserved !== undefined) {
    throw new RelayError(
      ErrorCode.invalidMessage,
      `header ${reserved} is reserved for the relay and its operators (${RESERVED_HEADER_PREFIX}*)`,
    );
  }
}

export class Producer {
  private readonly pool: ConnectionPool;
  private readonly ownsPool: boolean;
  private channel: Promise<ConfirmChannel> | undefined;
  private readonly provisioned = new Set<string>();
  private closing: Promise<void> | undefined;
  private readonly logger: Logger;

  constructor(private readonly options: ProducerOptions) {
    this.logger = options.logger ?? silentLogger();
    this.ownsPool = options.pool === undefined;
    this.pool =
      options.pool ??
      new ConnectionPool({
        url: options.url,
        name: options.connectionName ?? 'inbox-relay producer',
        channelsPerConnection: 16,
        logger: this.logger,
      });
  }

  /** Publishes `data` to the user's inbox; resolves once RabbitMQ confirmed it. */
  async publish(userId: string, data: unknown, options: PublishOptions = {}): Promise<PublishReceipt> {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'producer is closed');
    if (!isValidUserId(userId)) throw new RelayError(ErrorCode.invalidUserId, 'user id must be 1-128 characters of [A-Za-z0-9._:@-]');
    checkHeaders(options.headers);
    const { body, contentType } = encode(data, options.contentType);
    const messageId = options.messageId ?? randomUUID();
    return this.publishRaw(INBOX_EXCHANGE, userId, body, {
      messageId,
      contentType,
      timestamp: options.timestamp ?? Date.now(),
      ...(options.headers === undefined ? {} : { headers: options.headers }),
    }).then(() => ({ messageId }));
  }

  /**
   * Publishes bytes with the given properties to an exchange, persistent, awaiting the confirm.
   * The relay's own path (moving and dead-lettering messages): headers go as given.
   */
  async publishRaw(
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: { messageId: string; contentType?: string; timestamp?: number; headers?: Record<string, unknown> },
  ): Promise<void> {
    const blocked = this.pool.blocked;
    if (blocked !== undefined) {
      throw new RelayError(ErrorCode.brokerBlocked, `RabbitMQ is blocking publishers (${blocked}); try again later`, { retryable: true });
    }
    if (this.options.provision && exchange === INBOX_EXCHANGE && !this.provisioned.has(routingKey)) {
      await provisionInbox(() => this.pool.openChannel(), routingKey, this.options.provision);
      this.provisioned.add(routingKey);
    }
    const channel = await this.confirmChannel();
    const timeoutMs = this.options.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new RelayError(ErrorCode.publishTimeout, `no confirm from RabbitMQ within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      try {
        channel.publish(exchange, routingKey, body, { ...properties, persistent: true }, (error: unknown) => {
          clearTimeout(timer);
          if (error) {
            reject(
              new RelayError(ErrorCode.publishNacked, `RabbitMQ refused the message for ${routingKey} (inbox full or queue unavailable)`, {
                cause: error,
                retryable: true,
              }),
            );
          } else {
            resolve();
          }
        });
      } catch (error) {
        clearTimeout(timer);
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
    const channel = await this.confirmChannel();
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

  private confirmChannel(): Promise<ConfirmChannel> {
    if (!this.channel) {
      const opening = this.pool.openConfirmChannel();
      this.channel = opening;
      opening.then(
        (channel) =>
          channel.once('close', () => {
            if (this.channel === opening) this.channel = undefined;
          }),
        () => {
          if (this.channel === opening) this.channel = undefined;
        },
      );
    }
    return this.channel;
  }

  /** Closes the channel and, unless the pool was shared, the connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const channel = await this.channel?.catch(() => undefined);
      await channel?.close().catch(() => undefined);
      if (this.ownsPool) await this.pool.close();
    })();
    return this.closing;
  }
}
