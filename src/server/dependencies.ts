/**
 * Everything the relay needs before it can accept a connection, started in order: the breakers,
 * the state store, the node bus (start-node-bus.ts), the AMQP pools, the producer, the dead-letter
 * and receipt publishers, presence (start-presence.ts), the shared topology, the unrouted mover
 * and the resource-alarm probe.
 *
 * This module guarantees: when a step fails (Redis unreachable, the topology clashes with what
 * the broker has, ...), everything the earlier steps started is closed, newest first, before
 * `startDependencies` rejects with that step's error; nothing it opened stays open. `close()` is
 * idempotent (one stored promise) and closes only what this module created (never a store it was
 * handed). The close order is the tail of the relay's shutdown: producer and AMQP connections,
 * then the store (its last batch still goes through the breaker), then the breakers.
 */
import { background } from '../background.js';
import type { RelayConfig } from '../config.js';
import { ErrorCode, RelayError, errorMessage, isRelayError } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { ConnectionPool } from '../amqp/connection-pool.js';
import { DeadLetterPublisher } from '../amqp/dead-letter-publisher.js';
import { createInboxConsumerFactory } from '../amqp/inbox-consumer.js';
import { Producer } from '../amqp/producer.js';
import { ReceiptPublisher } from '../amqp/receipt-publisher.js';
import type { ReceiptSink } from '../delivery/delivery-receipt.js';
import { INBOX_EXCHANGE, declareSharedTopology, queueSettingsOf } from '../amqp/topology.js';
import { UnroutedMover, type UnroutedMoverOptions } from '../amqp/unrouted-mover.js';
import type { PublishMessage } from '../publish/publish-request.js';
import type { ConsumerFactory, ConsumerHandle } from '../delivery/consumer.js';
import { Guard, isAmqpRequestError } from '../overload/breakers.js';
import { GuardedStore } from '../overload/guarded-store.js';
import { MemoryStore } from '../store/memory-store.js';
import { RedisStore } from '../store/redis-store.js';
import { checkSentinelMaster, describeRedis } from '../store/redis-target.js';
import type { SeqStore } from '../store/store.js';
import { AlarmProbe } from './alarm-probe.js';
import type { NodeBus } from '../cluster/node-bus.js';
import { startNodeBus } from '../cluster/start-node-bus.js';
import type { BackgroundClock } from '../delivery/background-clock.js';
import { ResourceStack, type StartStep } from './resource-stack.js';
import { startPresence, type PresenceBackend } from '../presence/start-presence.js';

export interface DependencyOptions {
  logger: Logger;
  events: RelayEvents;
  clock: BackgroundClock;
  /** Use this store instead of the configured one (tests); it is not closed here. */
  store?: SeqStore;
  /** Called with the relay's own Redis store once it exists, before it connects (tests watch its client). */
  onRedisStore?: (store: RedisStore) => void;
}

export interface Dependencies {
  /** The store the relay uses, behind the Redis breaker. */
  readonly store: SeqStore;
  /** The class name of the underlying store, for the start-up log. */
  readonly storeKind: string;
  /** How this node talks to the other relay nodes (Redis pub/sub); none without REDIS_URL (a single node). */
  readonly bus: NodeBus | undefined;
  /** Presence in Redis and its events (src/presence/); none without REDIS_URL (a single node). */
  readonly presence: PresenceBackend | undefined;
  /** Publishes delivery receipts to inbox.receipts (on the publishing connection). */
  readonly receipts: ReceiptSink;
  /** Starts a user's consumer through the broker breaker; refused while any breaker is open. */
  readonly consumers: ConsumerFactory;
  readonly guards: readonly Guard[];
  /** The first open breaker, if any. */
  openGuard(): Guard | undefined;
  /** Why delivery is paused on this whole node (a breaker open, a resource alarm), if it is. */
  nodeDegraded(): string | undefined;
  /**
   * Publishes one message to `inbox` for the HTTP publish API, through the relay's producer:
   * resolves once RabbitMQ confirmed it. Fails at once while RabbitMQ blocks publishing (not
   * counted against the broker breaker, which would take the node out of service for an alarm
   * that consumers do not feel), and a refused message (a full inbox) does not count either.
   */
  publishMessage(message: PublishMessage): Promise<void>;
  /** Why RabbitMQ blocks the relay's publishing connection (a resource alarm), if it does. */
  publishBlocked(): string | undefined;
  /** Stops the background work (unrouted mover, alarm probe) ahead of `close()`; idempotent. */
  quiesce(): Promise<void>;
  /** Closes everything started here, newest first. Idempotent. */
  close(): Promise<void>;
}

/** Starts the relay's dependencies in order; on failure closes what was started, then rethrows. */
export async function startDependencies(config: RelayConfig, options: DependencyOptions): Promise<Dependencies> {
  const { logger, events, clock } = options;
  const settings = queueSettingsOf(config);
  const stack = new ResourceStack((name, error) => logger.warn({ resource: name, err: errorMessage(error) }, 'close failed'));
  const step: StartStep = async (name, open, close) => {
    try {
      return await stack.start(name, open, close);
    } catch (error) {
      logger.error({ step: name, err: errorMessage(error) }, 'start-up failed; closed what was started');
      throw error;
    }
  };

  // Breakers first, so that they close last: the store's final batch goes through the Redis one.
  // Their probes run only after a guarded call failed, so after the store and pools exist; they
  // read them from `started`, which is filled in as the later steps open them.
  const started: { rawStore?: SeqStore; redisStore?: RedisStore; consumerPool?: ConnectionPool } = {};
  const redisGuard = await step(
    'redis breaker',
    () =>
      new Guard({
        name: 'redis',
        settings: config.breaker,
        timeoutMs: config.breaker.redisTimeoutMs,
        code: ErrorCode.storeUnavailable,
        probe: () => (started.redisStore ? started.redisStore.ping() : (started.rawStore?.peek('probe') ?? Promise.resolve())),
        events,
        logger,
      }),
    (guard) => guard.shutdown(),
  );
  const brokerGuard = await step(
    'rabbitmq breaker',
    () =>
      new Guard({
        name: 'rabbitmq',
        settings: config.breaker,
        timeoutMs: config.breaker.brokerTimeoutMs,
        code: ErrorCode.brokerUnavailable,
        probe: async () => (started.consumerPool ? (await started.consumerPool.openChannel()).close() : undefined),
        ignore: isAmqpRequestError,
        events,
        logger,
      }),
    (guard) => guard.shutdown(),
  );
  const guards = [redisGuard, brokerGuard];
  const openGuard = (): Guard | undefined => guards.find((guard) => guard.opened);

  const rawStore =
    options.store ??
    (await step(
      'store',
      () => createOwnStore(config, logger),
      (store) => store.close(),
    ));
  started.rawStore = rawStore;
  // ioredis rejects a failed connect with "Connection is closed."; the socket's own error
  // (ECONNREFUSED, ENOTFOUND, NOAUTH) is what tells an operator what to fix.
  let lastRedisError: string | undefined;
  if (rawStore instanceof RedisStore) {
    let server: string | undefined;
    rawStore.redis.on('ready', () => {
      events.emit('redis-connection', 'connected');
      // Which server answered: another one than before means a failover (Sentinel promoted a replica).
      const stream = rawStore.redis.stream;
      const now = `${stream.remoteAddress ?? '?'}:${stream.remotePort ?? '?'}`;
      if (server !== undefined && now !== server) {
        events.emit('store-failover');
        logger.warn({ from: server, to: now }, 'state store reconnected to another Redis server (failover)');
      }
      server = now;
    });
    rawStore.redis.on('close', () => events.emit('redis-connection', 'disconnected'));
    rawStore.redis.on('error', (error: Error) => {
      lastRedisError = errorMessage(error);
      logger.debug({ err: lastRedisError }, 'redis error');
    });
  }
  // The relay's own Redis store batches its operations, and the breaker guards each batch (one
  // round trip); any other store (or one passed in) is guarded call by call.
  if (rawStore instanceof RedisStore && !options.store) {
    const own = rawStore;
    started.redisStore = own;
    options.onRedisStore?.(own);
    const redis = config.redis;
    if (redis !== undefined && typeof redis !== 'string') await step('sentinel check', () => checkSentinelMaster(redis));
    await step('store connection', () =>
      own.connect().catch((error: unknown) => {
        // The host only: a URL may carry a password.
        const where = config.redis ? describeRedis(config.redis) : 'redis';
        const why = lastRedisError === undefined ? errorMessage(error) : `${lastRedisError} (${errorMessage(error)})`;
        throw new RelayError(ErrorCode.storeUnavailable, `cannot connect to Redis at ${where}: ${why}`, {
          cause: error,
          retryable: true,
        });
      }),
    );
    own.guardWith((call) => redisGuard.run(call));
  }
  const store: SeqStore = started.redisStore ?? new GuardedStore(rawStore, redisGuard);
  const bus = config.redis ? await startNodeBus(config.redis, config, events, logger, step) : undefined;

  const consumers = await step(
    'consumer pool',
    () =>
      new ConnectionPool({
        url: config.rabbitmqUrls,
        heartbeatS: config.rabbitmqHeartbeatS,
        name: `${config.amqpConnectionName} consumer`,
        channelsPerConnection: config.channelsPerConnection,
        logger,
      }),
    (pool) => pool.close(),
  );
  started.consumerPool = consumers;
  const publisherPool = await step(
    'publisher pool',
    () =>
      new ConnectionPool({
        url: config.rabbitmqUrls,
        heartbeatS: config.rabbitmqHeartbeatS,
        name: `${config.amqpConnectionName} publisher`,
        channelsPerConnection: 64,
        logger,
      }),
    (pool) => pool.close(),
  );
  watchPools(consumers, publisherPool, events, logger);
  const producer = await step(
    'producer',
    () => new Producer({ url: config.rabbitmqUrls, pool: publisherPool, publishTimeoutMs: config.publishTimeoutMs, logger }),
    (created) => created.close(),
  );

  const presence = config.redis ? await startPresence(config.redis, config, publisherPool, logger, step) : undefined;
  const deadLetters = await step(
    'dead-letter publisher',
    () => new DeadLetterPublisher({ pool: publisherPool, timeoutMs: config.publishTimeoutMs }),
    (created) => created.close(),
  );

  const receipts = await step(
    'receipt publisher',
    () => new ReceiptPublisher({ pool: publisherPool, timeoutMs: config.publishTimeoutMs, nodeId: config.nodeId }),
    (created) => created.close(),
  );

  await step('topology', () =>
    declareSharedTopology(() => consumers.openChannel(), settings, {
      onQueueMismatch: (queue, error) =>
        logger.warn({ queue, err: errorMessage(error) }, 'queue exists with other arguments; using it as it is'),
    }),
  );
  /** The relay's own publishing (moves, the publish API) through the broker breaker. */
  const publishGuarded: UnroutedMoverOptions['publish'] = async (exchange, routingKey, body, properties) => {
    // A negative confirm is about one inbox (full), not the broker's health: it goes past the
    // breaker as a result, so that a run of full inboxes cannot open it for every user. So does a
    // resource alarm, which blocks publishers only: consumers keep delivering meanwhile.
    const refused = await brokerGuard.run(async () => {
      try {
        await producer.publishRaw(exchange, routingKey, body, properties);
        return undefined;
      } catch (error) {
        if (isRelayError(error, ErrorCode.publishNacked) || isRelayError(error, ErrorCode.brokerBlocked)) return error;
        throw error;
      }
    });
    if (refused !== undefined) throw refused;
  };
  const mover = new UnroutedMover({
    pool: consumers,
    publish: publishGuarded,
    publishDeadLetter: deadLetters.publish,
    receipts,
    settings,
    provisionRatePerSec: config.unroutedProvisionRatePerSec,
    logger,
    clock,
    onMoved: () => events.emit('unrouted-moved'),
    onDeadLettered: (reason) => events.emit('dead-lettered', reason),
    onProvisioned: () => events.emit('unrouted-provisioned'),
    onProvisionWait: (ms) => events.emit('unrouted-provision-wait', ms),
  });
  // Registered before it starts: a start that fails half-way still has its channel closed.
  stack.add('unrouted mover', () => mover.stop());
  await step('unrouted mover start', () => mover.start());
  const probe = new AlarmProbe({ touch: () => producer.touch(), blocked: () => publisherPool.blocked !== undefined, clock, logger });
  await step(
    'alarm probe',
    () => probe.start(),
    () => probe.stop(),
  );

  const inboxConsumers = createInboxConsumerFactory(consumers, settings, logger, config.nodeId, {
    publish: deadLetters.publish,
    onSettled: ({ reason, copied }) => {
      if (!copied) events.emit('dead-letter-fallback', reason);
    },
  });
  const guardedConsumers = guardConsumers(inboxConsumers, brokerGuard, openGuard);
  let quiescing: Promise<void> | undefined;
  return {
    store,
    storeKind: rawStore.constructor.name,
    consumers: guardedConsumers,
    receipts,
    guards,
    openGuard,
    bus,
    presence,
    nodeDegraded: () => {
      const open = openGuard();
      if (open) return `${open.name} unavailable`;
      if (bus && bus.state !== 'connected') return 'node bus unavailable';
      return publisherPool.blocked !== undefined ? 'broker blocked: resource alarm' : undefined;
    },
    publishBlocked: () => publisherPool.blocked,
    publishMessage: async ({ user, body, messageId, contentType }) => {
      const blocked = publisherPool.blocked;
      if (blocked !== undefined) {
        throw new RelayError(ErrorCode.brokerBlocked, `RabbitMQ is blocking publishers (${blocked})`, { retryable: true });
      }
      await publishGuarded(INBOX_EXCHANGE, user, body, { messageId, contentType, timestamp: Date.now() });
    },
    quiesce: () => {
      quiescing ??= (async () => {
        probe.stop();
        await mover.stop();
      })();
      return quiescing;
    },
    close: () => stack.close(),
  };
}

async function createOwnStore(config: RelayConfig, logger: Logger): Promise<SeqStore> {
  const limits = { maxCount: config.historyMaxCount, maxAgeMs: config.historyMaxAgeMs };
  if (config.redis) {
    return new RedisStore({
      url: config.redis,
      keyPrefix: config.redisKeyPrefix,
      limits,
      commandTimeoutMs: config.redisCommandTimeoutMs,
    });
  }
  logger.warn(
    'neither REDIS_URL nor REDIS_SENTINELS is set: using an in-memory state store, fit for a single node only (a restart resets every epoch)',
  );
  return new MemoryStore(limits);
}

function watchPools(consumerPool: ConnectionPool, publisherPool: ConnectionPool, events: RelayEvents, logger: Logger): void {
  for (const pool of [consumerPool, publisherPool]) {
    pool.on('connected', (index, host) => {
      events.emit('amqp-connection', 'connected');
      logger.info({ connection: index, host }, 'AMQP connection open');
    });
    pool.on('disconnected', (index, reason) => {
      events.emit('amqp-connection', 'disconnected');
      logger.warn({ connection: index, reason }, 'AMQP connection lost');
    });
  }
  publisherPool.on('blocked', (reason) => {
    events.emit('broker-blocked', true);
    logger.warn({ reason }, 'RabbitMQ blocks publishing (resource alarm); consumers keep delivering');
  });
  publisherPool.on('unblocked', () => {
    events.emit('broker-blocked', false);
    logger.info('RabbitMQ unblocked publishing');
  });
}

/** Consumer set-up through the broker breaker, refused at once while any breaker is open. */
function guardConsumers(factory: ConsumerFactory, brokerGuard: Guard, openGuard: () => Guard | undefined): ConsumerFactory {
  return (user, prefetch, callbacks) => {
    const open = openGuard();
    if (open)
      return Promise.reject(new RelayError(ErrorCode.brokerUnavailable, `${open.name} unavailable: no new consumers`, { retryable: true }));
    let started: Promise<ConsumerHandle> | undefined;
    return brokerGuard
      .run(() => (started = factory(user, prefetch, callbacks)))
      .catch((error: unknown) => {
        // The breaker may give up (timeout) on a set-up that still completes: close that consumer,
        // or it would hold the queue's single-active-consumer slot with nobody behind it.
        if (started)
          background(
            started.then((orphan) => orphan.close()),
            () => undefined,
          );
        throw error;
      });
  };
}
