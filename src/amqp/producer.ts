/**
 * The producer library: publishes one message to a user's inbox and resolves only once RabbitMQ
 * confirmed it (persistent, publisher confirms, a unique messageId). Rejects with a RelayError:
 * `RELAY_ERR_PUBLISH_NACKED` when the broker kept refusing it (the inbox is full: its length limit
 * rejects new messages instead of dropping old ones), `RELAY_ERR_BROKER_BLOCKED` at once while a
 * resource alarm blocks publishing, `RELAY_ERR_PUBLISH_TIMEOUT` when no confirm came in time.
 *
 * A refusal is tried again on a new channel, after a short wait, before it is reported: RabbitMQ
 * 3.10 also refuses, on one channel, every publish to a quorum queue whose leader's node died
 * while that channel first published to it, until the channel closes (a new channel is accepted
 * once a new leader is elected; the cluster tests show it). A full inbox is reported after the
 * retries, a few seconds later than the first refusal.
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
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULTS } from '../config.js';
import { ErrorCode, RelayError, errorMessage, isRelayError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { isValidUserId } from '../protocol/user-id.js';
import { RECEIPT_HEADER } from '../delivery/delivery-receipt.js';
import { ConnectionPool } from './connection-pool.js';
import { PublishChannel } from './publish-channel.js';
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

/** The default waits before the tries of a refused publish: 3.75 s in all, past a leader election. */
export const NACK_RETRY_DELAYS_MS: readonly number[] = [250, 500, 1000, 2000];

/** amqplib's error for a negative confirm (RabbitMQ refused the message), as opposed to a closed channel. */
function channelNacked(error: unknown): boolean {
  return error instanceof Error && error.message === 'message nacked';
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

export class Producer {
  private readonly pool: ConnectionPool;
  private readonly ownsPool: boolean;
  private readonly channel: PublishChannel;
  private readonly provisioned = new Set<string>();
  private closing: Promise<void> | undefined;
  private readonly logger: Logger;
  private retriedCount = 0;
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
    this.channel = new PublishChannel(this.pool, options.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs);
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

  /** Publishes that were tried more than once (their first try met a lost channel or a timeout). */
  get retried(): number {
    return this.retriedCount;
  }

  /**
   * Publishes bytes with the given properties to an exchange, persistent, awaiting the confirm.
   * The relay's own path (moving and dead-lettering messages): headers go as given. A lost
   * channel or a timeout is tried again as `attempts` says, a refusal (a nack) as
   * `nackRetryDelaysMs` says; a blocked broker is not.
   */
  async publishRaw(
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: { messageId: string; contentType?: string; timestamp?: number; headers?: Record<string, unknown> },
  ): Promise<void> {
    const urls = typeof this.options.url === 'string' ? 1 : this.options.url.length;
    const attempts = this.options.attempts ?? Math.max(2, urls + 1);
    const nackDelays = this.options.nackRetryDelaysMs ?? NACK_RETRY_DELAYS_MS;
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
        await this.channel.drop();
      }
    }
  }

  private countRetry(attempt: number, routingKey: string, error: RelayError): void {
    if (attempt === 1) this.retriedCount += 1;
    this.logger.warn({ routingKey, attempt, code: error.code, err: errorMessage(error) }, 'publish not confirmed; trying again');
  }

  private async publishOnce(
    exchange: string,
    routingKey: string,
    body: Buffer,
    properties: { messageId: string; contentType?: string; timestamp?: number; headers?: Record<string, unknown> },
  ): Promise<void> {
    const blocked = this.pool.blocked;
    if (blocked !== undefined) {
      throw new RelayError(ErrorCode.brokerBlocked, `RabbitMQ is blocking publishers (${blocked}); try again later`, { retryable: true });
    }
    if (exchange === INBOX_EXCHANGE) await this.provisionOnce(routingKey);
    const channel = await this.channel.current();
    const timeoutMs = this.options.publishTimeoutMs ?? DEFAULTS.publishTimeoutMs;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new RelayError(ErrorCode.publishTimeout, `no confirm from RabbitMQ within ${timeoutMs} ms`, { retryable: true }));
      }, timeoutMs);
      try {
        this.channel.published(channel);
        channel.publish(exchange, routingKey, body, { ...properties, persistent: true }, (error: unknown) => {
          clearTimeout(timer);
          this.channel.settled(channel);
          if (error && !channelNacked(error)) {
            // The channel closed before the confirm (its connection or node went away).
            reject(new RelayError(ErrorCode.brokerUnavailable, `no confirm: ${errorMessage(error)}`, { cause: error, retryable: true }));
          } else if (error) {
            // The refusal may be the channel's alone (see the module comment): the next try goes on a new one.
            this.channel.retire(channel);
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
        this.channel.settled(channel);
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
    const channel = await this.channel.current();
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

  /** Closes the channel and, unless the pool was shared, the connection. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.channel.close();
      await this.presenceStore?.close();
      if (this.ownsPool) await this.pool.close();
    })();
    return this.closing;
  }
}
