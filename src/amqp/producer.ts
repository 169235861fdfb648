/**
 * The producer library: publishes one message to a user's inbox and resolves only once RabbitMQ
 * confirmed it (persistent, publisher confirms, a unique messageId). Rejects with a RelayError:
 * `RELAY_ERR_PUBLISH_NACKED` when the broker kept refusing it (the inbox is full: its length limit
 * rejects new messages instead of dropping old ones), `RELAY_ERR_BROKER_BLOCKED` at once while a
 * resource alarm blocks publishing, `RELAY_ERR_PUBLISH_TIMEOUT` when no confirm came in time.
 * A lost channel, a timeout and a refusal are tried again before they are reported
 * (confirmed-publisher.ts says how and why), so a full inbox is reported a few seconds after its
 * first refusal.
 * `publish` never sets a header of the relay and its operators (`x-inbox-relay-*`, such as the
 * replay mark of dead letters): it refuses a message that asks for one.
 *
 * Delivery receipts (receipt-stream.ts): `publish(..., { receipt: true })` asks the relay for a
 * receipt once the message is acked by a client or dead-lettered; `receipts()` reads them.
 *
 * Topics (topics.ts): `follow`/`unfollow` bind and unbind a user's inbox to `inbox.topics`,
 * `following` lists the bindings through the management API, `publishTopic` publishes once to a
 * topic and RabbitMQ copies the message into every following inbox.
 *
 * Presence (src/presence/): `presence` reads who is connected from the relays' Redis.
 */
import { randomUUID } from 'node:crypto';
import { DEFAULTS } from '../config.js';
import { ErrorCode, RelayError, errorMessage, isRelayError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { isValidUserId } from '../protocol/user-id.js';
import { isValidMessageId } from '../delivery/message-codec.js';
import { RECEIPT_HEADER } from '../delivery/delivery-receipt.js';
import { ConnectionPool } from './connection-pool.js';
import { ConfirmedPublisher, NACK_RETRY_DELAYS_MS, type RawProperties } from './confirmed-publisher.js';
import { ReceiptStream, type ReceiptsOptions } from './receipt-stream.js';
import { vhostOf } from './management-request.js';
import { checkTopic, checkTopicPattern, declareTopicExchange, followTopic, listFollowedPatterns, unfollowTopic } from './topics.js';
import type { UserPresence } from '../presence/presence-store.js';
import { RedisPresenceStore } from '../presence/redis-presence-store.js';
import type { RedisTarget } from '../store/redis-target.js';
import { INBOX_EXCHANGE, RESERVED_HEADER_PREFIX, TOPIC_EXCHANGE, provisionInbox, type QueueSettings } from './topology.js';

export interface ProducerOptions {
  /** One broker URL, or the URLs of a cluster's nodes (RABBITMQ_URL as a list). */
  url: string | readonly string[];
  /** The AMQP heartbeat asked for, in seconds (default 10; a silent link is noticed in about 2-3 of them). */
  heartbeatS?: number;
  /**
   * How many times one publish is tried in all (default: one more than there are URLs, at least
   * 2). A publish whose channel or connection died before the confirm, that timed out, or that
   * could not get a channel, is tried again on a fresh channel (on the next node, when its node
   * went away) with the same messageId: the relay numbers a message id once, so a copy that
   * did reach the broker is not delivered twice.
   */
  attempts?: number;
  /**
   * The waits before each new try of a refused publish (a nack), in ms; default
   * NACK_RETRY_DELAYS_MS, `[]` reports the first refusal. Each try is on a new channel.
   */
  nackRetryDelaysMs?: readonly number[];
  /** With these, each user's inbox is declared before the first publish to it, so that no message takes the unrouted path. */
  provision?: QueueSettings;
  publishTimeoutMs?: number;
  logger?: Logger;
  /** Share a pool instead of opening a connection of its own (the relay does). */
  pool?: ConnectionPool;
  /** The AMQP connection name RabbitMQ shows (default: inbox-relay producer). */
  connectionName?: string;
  /**
   * RabbitMQ's management HTTP API with credentials (`http://user:pass@host:15672`): needed only
   * by `following()`, because AMQP cannot list a queue's bindings. The virtual host is the first URL's.
   */
  managementUrl?: string;
  /**
   * The Redis the relays use (REDIS_URL, or the Sentinel set): needed only by `presence()`, which
   * reads there. A connection of its own is opened on the first call.
   */
  redis?: RedisTarget;
  /** The relays' REDIS_KEY_PREFIX (default `inbox-relay:`): presence is read under it. */
  redisKeyPrefix?: string;
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
  /**
   * Ask the relay for a delivery receipt (the header `inbox-receipt: true`): once a connection of
   * the user acked the message, or the relay dead-lettered it, a receipt goes to `inbox.receipts`
   * (read them with `receipts()`). At least once: a receipt may come twice.
   */
  receipt?: boolean;
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

/** Users read in one script call: Redis serves no one else while a script runs. */
const PRESENCE_READ_BATCH = 200;

function checkUserId(userId: string): void {
  if (!isValidUserId(userId)) throw new RelayError(ErrorCode.invalidUserId, 'user id must be 1-128 characters of [A-Za-z0-9._:@-]');
}

export { NACK_RETRY_DELAYS_MS } from './confirmed-publisher.js';

export class Producer {
  private readonly pool: ConnectionPool;
  private readonly ownsPool: boolean;
  private readonly publisher: ConfirmedPublisher;
  private readonly provisioned = new Set<string>();
  private closing: Promise<void> | undefined;
  private readonly logger: Logger;
  private topicExchange: Promise<void> | undefined;
  private presenceStore: RedisPresenceStore | undefined;

  constructor(private readonly options: ProducerOptions) {
    this.logger = options.logger ?? silentLogger();
    this.ownsPool = options.pool === undefined;
    this.pool =
      options.pool ??
      new ConnectionPool({
        url: options.url,
        heartbeatS: options.heartbeatS ?? DEFAULTS.rabbitmqHeartbeatS,
        name: options.connectionName ?? 'inbox-relay producer',
        channelsPerConnection: 16,
        logger: this.logger,
      });
    const urls = typeof options.url === 'string' ? 1 : options.url.length;
    this.publisher = new ConfirmedPublisher({
      pool: this.pool,
      attempts: options.attempts ?? Math.max(2, urls + 1),
      nackRetryDelaysMs: options.nackRetryDelaysMs ?? NACK_RETRY_DELAYS_MS,
      publishTimeoutMs: options.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs,
      logger: this.logger,
      beforePublish: async (exchange, routingKey) => {
        if (exchange === INBOX_EXCHANGE) await this.provisionOnce(routingKey);
      },
    });
  }

  /** Publishes `data` to the user's inbox; resolves once RabbitMQ confirmed it. */
  async publish(userId: string, data: unknown, options: PublishOptions = {}): Promise<PublishReceipt> {
    this.checkOpen();
    checkUserId(userId);
    return this.publishMessage(INBOX_EXCHANGE, userId, data, options);
  }

  /**
   * Publishes `data` once to the topic exchange `inbox.topics` with `topic` as routing key;
   * resolves once RabbitMQ confirmed it, by then copied into the inbox of every user following a
   * matching pattern (none: the message goes nowhere). Each copy keeps the messageId, which the
   * relay numbers once per inbox: a retry with the same messageId is not delivered twice.
   * Rejects `RELAY_ERR_INVALID_TOPIC` before publishing anything when the topic breaks the rules
   * (topics.ts); otherwise as `publish` (a nack: some following inbox is full and refused its copy).
   */
  async publishTopic(topic: string, data: unknown, options: PublishOptions = {}): Promise<PublishReceipt> {
    this.checkOpen();
    checkTopic(topic);
    await this.ensureTopicExchange();
    return this.publishMessage(TOPIC_EXCHANGE, topic, data, options);
  }

  /**
   * The user follows `pattern` (`news.sports.*`, `team.42.#`): binds the user's inbox to
   * `inbox.topics`. Idempotent. The inbox is declared first when the producer has `provision`;
   * without it the inbox must exist (`RELAY_ERR_INBOX_MISSING`). A pattern that breaks the rules
   * is refused before anything is bound (`RELAY_ERR_INVALID_TOPIC_PATTERN`).
   */
  async follow(userId: string, pattern: string): Promise<void> {
    this.checkOpen();
    checkUserId(userId);
    checkTopicPattern(pattern);
    await this.provisionOnce(userId);
    await followTopic(() => this.pool.openChannel(), userId, pattern);
  }

  /** The user stops following `pattern`: later publishes to matching topics skip the inbox. Idempotent. */
  async unfollow(userId: string, pattern: string): Promise<void> {
    this.checkOpen();
    checkUserId(userId);
    checkTopicPattern(pattern);
    await unfollowTopic(() => this.pool.openChannel(), userId, pattern);
  }

  /** The patterns the user follows, sorted; needs `managementUrl` (`RELAY_ERR_MANAGEMENT_API` without it). */
  async following(userId: string): Promise<string[]> {
    this.checkOpen();
    checkUserId(userId);
    const first = typeof this.options.url === 'string' ? this.options.url : (this.options.url[0] ?? 'amqp://localhost');
    return listFollowedPatterns(this.options.managementUrl, vhostOf(first), userId);
  }

  /**
   * The presence of a user (or of each user, in the order given): the connections open now, on
   * which node, since when, with their device labels, and `lastSeen` once offline. Needs the
   * `redis` option (RELAY_ERR_CONFIG without it); RELAY_ERR_STORE_UNAVAILABLE when Redis fails.
   */
  presence(user: string): Promise<UserPresence>;
  presence(users: readonly string[]): Promise<UserPresence[]>;
  async presence(users: string | readonly string[]): Promise<UserPresence | UserPresence[]> {
    this.checkOpen();
    const list = typeof users === 'string' ? [users] : [...users];
    for (const user of list) checkUserId(user);
    const redis = this.options.redis;
    if (redis === undefined) {
      throw new RelayError(
        ErrorCode.config,
        'presence needs the Redis the relays use: pass the `redis` option (a redis:// URL or a Sentinel set)',
      );
    }
    this.presenceStore ??= new RedisPresenceStore({ url: redis, keyPrefix: this.options.redisKeyPrefix ?? DEFAULTS.redisKeyPrefix });
    const found: UserPresence[] = [];
    try {
      for (let start = 0; start < list.length; start += PRESENCE_READ_BATCH) {
        found.push(...(await this.presenceStore.read(list.slice(start, start + PRESENCE_READ_BATCH))));
      }
    } catch (error) {
      if (isRelayError(error)) throw error;
      throw new RelayError(ErrorCode.storeUnavailable, `cannot read presence from Redis: ${errorMessage(error)}`, {
        cause: error,
        retryable: true,
      });
    }
    return typeof users === 'string' ? found[0]! : found;
  }

  private checkOpen(): void {
    if (this.closing) throw new RelayError(ErrorCode.closed, 'producer is closed');
  }

  /**
   * Delivery receipts from the producer's own durable queue `queue`, declared and bound to
   * `inbox.receipts` for `users` (default: every user) on the first `next()`. Each receipt is
   * acked when the loop asks for the next one; breaking out leaves the one in hand in the queue.
   * See ReceiptStream for what ends the loop.
   */
  receipts(options: ReceiptsOptions): ReceiptStream {
    this.checkOpen();
    return new ReceiptStream(() => this.pool.openChannel(), options);
  }

  private publishMessage(exchange: string, routingKey: string, data: unknown, options: PublishOptions): Promise<PublishReceipt> {
    checkHeaders(options.headers);
    const { body, contentType } = encode(data, options.contentType);
    const messageId = options.messageId ?? randomUUID();
    if (!isValidMessageId(messageId)) {
      // The relay would dead-letter it (invalid-message): refuse it here, before it is published.
      throw new RelayError(ErrorCode.invalidMessage, 'messageId must be 1-255 characters without control characters');
    }
    const headers = options.receipt ? { ...options.headers, [RECEIPT_HEADER]: true } : options.headers;
    return this.publishRaw(exchange, routingKey, body, {
      messageId,
      contentType,
      timestamp: options.timestamp ?? Date.now(),
      ...(headers === undefined ? {} : { headers }),
    }).then(() => ({ messageId }));
  }

  /** Publishing to an exchange that does not exist closes the channel: declare it once first. */
  private ensureTopicExchange(): Promise<void> {
    const declaring = (this.topicExchange ??= declareTopicExchange(() => this.pool.openChannel()));
    declaring.catch(() => {
      if (this.topicExchange === declaring) this.topicExchange = undefined;
    });
    return declaring;
  }

  private async provisionOnce(userId: string): Promise<void> {
    if (!this.options.provision || this.provisioned.has(userId)) return;
    await provisionInbox(() => this.pool.openChannel(), userId, this.options.provision);
    this.provisioned.add(userId);
  }

  /** Publishes that were tried more than once (their first try was refused, met a lost channel or a timeout). */
  get retried(): number {
    return this.publisher.retried;
  }

  /**
   * Publishes bytes with the given properties to an exchange, persistent, awaiting the confirm,
   * tried again as ConfirmedPublisher says. The relay's own path (moving and dead-lettering
   * messages): headers go as given.
   */
  async publishRaw(exchange: string, routingKey: string, body: Buffer, properties: RawProperties): Promise<void> {
    await this.publisher.publish(exchange, routingKey, body, properties);
  }

  /** See ConfirmedPublisher.touch. */
  touch(): Promise<void> {
    return this.publisher.touch();
  }

  /** Closes the channel and, unless the pool was shared, the connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.publisher.close();
      await this.presenceStore?.close();
      if (this.ownsPool) await this.pool.close();
    })();
    return this.closing;
  }
}
