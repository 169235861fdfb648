/**
 * What presence needs from the relay's dependencies: its store on the deployment's Redis (same
 * target and key prefix as the state store, so nodes that share numbering share presence) and
 * the publishing of its events to `inbox.presence`, on the relay's publisher connections.
 *
 * Events are published once, never retried (at most once per move: a retry after a lost confirm
 * could publish one twice), persistent, with publisher confirms.
 */
import { randomUUID } from 'node:crypto';
import type { ConnectionPool } from '../amqp/connection-pool.js';
import { Producer } from '../amqp/producer.js';
import { PRESENCE_EXCHANGE } from '../amqp/topology.js';
import type { RelayConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { StartStep } from '../server/resource-stack.js';
import type { RedisTarget } from '../store/redis-target.js';
import type { PresenceStore } from './presence-store.js';
import type { PresenceEvent } from './presence-tracker.js';
import { RedisPresenceStore } from './redis-presence-store.js';

export interface PresenceBackend {
  readonly store: PresenceStore;
  /** Publishes one event to `inbox.presence` (routing key: the user); resolves once RabbitMQ confirmed it. */
  readonly publish: (event: PresenceEvent) => Promise<void>;
}

export async function startPresence(
  redis: RedisTarget,
  config: RelayConfig,
  publisherPool: ConnectionPool,
  logger: Logger,
  step: StartStep,
): Promise<PresenceBackend> {
  const store = await step(
    'presence store',
    () => new RedisPresenceStore({ url: redis, keyPrefix: config.redisKeyPrefix, commandTimeoutMs: config.redisCommandTimeoutMs }),
    (created) => created.close(),
  );
  // Redis answered the state store a moment ago; a presence connection that fails now is left to
  // reconnect by itself: presence never holds the relay back.
  store.connect().catch(() => undefined);
  const producer = await step(
    'presence producer',
    () =>
      new Producer({
        url: config.rabbitmqUrls,
        pool: publisherPool,
        attempts: 1,
        // Nor is a refusal tried again: a message that one queue refused may be in the others.
        nackRetryDelaysMs: [],
        publishTimeoutMs: config.publishTimeoutMs,
        logger,
      }),
    (created) => created.close(),
  );
  return {
    store,
    publish: (event) =>
      producer.publishRaw(PRESENCE_EXCHANGE, event.user, Buffer.from(JSON.stringify(event)), {
        messageId: randomUUID(),
        contentType: 'application/json',
        timestamp: event.at,
      }),
  };
}
