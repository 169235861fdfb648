/**
 * The composition root: builds the relay from its configuration (state store, AMQP pools,
 * breakers, topology, unrouted mover, user streams, WebSocket and admin listeners) and owns all
 * of them. `drain()` is the shutdown order of STYLE.md: readiness off, no new upgrades, clients
 * told to reconnect (1012), in-flight messages released to RabbitMQ in order, channels closed,
 * store closed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { RelayConfig } from '../config.js';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { CloseCode, retryAfterReason } from '../protocol/close-codes.js';
import { SUBPROTOCOL } from '../protocol/frames.js';
import { ConnectionPool } from '../amqp/connection-pool.js';
import { createInboxConsumerFactory } from '../amqp/inbox-consumer.js';
import { Producer } from '../amqp/producer.js';
import { declareSharedTopology } from '../amqp/topology.js';
import { UnroutedMover } from '../amqp/unrouted-mover.js';
import type { ConsumerFactory, ConsumerHandle } from '../delivery/consumer.js';
import { StreamRegistry } from '../delivery/stream-registry.js';
import { createMetrics } from '../metrics/metrics.js';
import { AdmissionControl, jitteredRetryAfter, type AdmissionReason } from '../overload/admission.js';
import { Guard, isAmqpRequestError } from '../overload/breakers.js';
import { GuardedStore } from '../overload/guarded-store.js';
import { LagMonitor } from '../overload/lag-monitor.js';
import { MemoryStore } from '../store/memory-store.js';
import { RedisStore } from '../store/redis-store.js';
import type { SeqStore } from '../store/store.js';
import { createAdminServer } from './admin-server.js';
import { ClientConnection } from './client-connection.js';
import { checkUpgrade, refuseUpgrade } from './upgrade.js';

export interface Relay {
  /** Metrics and logs listen here. */
  readonly events: RelayEvents;
  readonly port: number;
  readonly adminPort: number;
  readonly store: SeqStore;
  readonly registry: StreamRegistry;
  /** Open client connections. */
  readonly connectionCount: number;
  /** Accepting connections: not draining and no breaker open. */
  readonly ready: boolean;
  /** Breaker states by name. */
  breakers(): Record<string, 'open' | 'half-open' | 'closed'>;
  /** Graceful shutdown (see the module comment). Idempotent. */
  drain(): Promise<void>;
}

export interface RelayDependencies {
  logger: Logger;
  /** Use this store instead of the configured one (tests); the relay does not close it. */
  store?: SeqStore;
  /** Called when a drain requested on the admin port (POST /drain) finished; main exits then. */
  onDrained?: () => void;
}

/** How often the relay checks, by publishing nothing, whether RabbitMQ blocks publishers. */
const ALARM_PROBE_MS = 5_000;

/**
 * The listen backlog (the kernel caps it at net.core.somaxconn). Node's default, 511, is too
 * short for a reconnect storm: past it the kernel drops SYNs, and a client only retries after
 * 1, 3, 7, 15... s. Accepted, a client that cannot be served now gets 1013 and a retry-after.
 */
const LISTEN_BACKLOG = 4_096;

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

async function createStore(config: RelayConfig, deps: RelayDependencies): Promise<{ store: SeqStore; owned: boolean }> {
  if (deps.store) return { store: deps.store, owned: false };
  const limits = { maxCount: config.historyMaxCount, maxAgeMs: config.historyMaxAgeMs };
  if (config.redisUrl) {
    const store = new RedisStore({ url: config.redisUrl, keyPrefix: config.redisKeyPrefix, limits, commandTimeoutMs: config.redisCommandTimeoutMs });
    await store.connect();
    return { store, owned: true };
  }
  deps.logger.warn('REDIS_URL is not set: using an in-memory state store, fit for a single node only (a restart resets every epoch)');
  return { store: new MemoryStore(limits), owned: true };
}

export async function startRelay(config: RelayConfig, deps: RelayDependencies): Promise<Relay> {
  const { logger } = deps;
  const events = new RelayEvents();
  const settings = { queueType: config.queueType, queueMaxLength: config.queueMaxLength, queueDeliveryLimit: config.queueDeliveryLimit };
  const { store: rawStore, owned: ownsStore } = await createStore(config, deps);
  // The relay's own Redis store batches its operations, and the breaker guards each batch (one
  // round trip); any other store (or one passed in) is guarded call by call.
  const redisStore = rawStore instanceof RedisStore && ownsStore ? rawStore : undefined;
  if (rawStore instanceof RedisStore) {
    rawStore.redis.on('ready', () => events.emit('redis-connection', 'connected'));
    rawStore.redis.on('close', () => events.emit('redis-connection', 'disconnected'));
    rawStore.redis.on('error', (error: Error) => logger.debug({ err: errorMessage(error) }, 'redis error'));
  }

  const consumerPool = new ConnectionPool({
    url: config.rabbitmqUrl,
    name: `${config.amqpConnectionName} consumer`,
    channelsPerConnection: config.channelsPerConnection,
    logger,
  });
  const publisherPool = new ConnectionPool({ url: config.rabbitmqUrl, name: `${config.amqpConnectionName} publisher`, channelsPerConnection: 64, logger });
  const producer = new Producer({ url: config.rabbitmqUrl, pool: publisherPool, publishTimeoutMs: config.publishTimeoutMs, logger });
  for (const pool of [consumerPool, publisherPool]) {
    pool.on('connected', () => events.emit('amqp-connection', 'connected'));
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
  // RabbitMQ tells a connection it is blocked only when it publishes, so the relay publishes a
  // message that goes nowhere every few seconds to learn about resource alarms early.
  let touching = false;
  const touch = (): void => {
    if (touching || publisherPool.blocked !== undefined) return;
    touching = true;
    producer
      .touch()
      .catch((error: unknown) => logger.debug({ err: errorMessage(error) }, 'publisher probe failed'))
      .finally(() => {
        touching = false;
      });
  };
  const alarmProbe = setInterval(touch, ALARM_PROBE_MS);
  alarmProbe.unref();

  // Breakers: the store, and the broker (consumer set-up, the relay's own publishing).
  const redisGuard = new Guard({
    name: 'redis',
    settings: config.breaker,
    timeoutMs: config.breaker.redisTimeoutMs,
    code: ErrorCode.storeUnavailable,
    probe: () => (redisStore ? redisStore.ping() : rawStore.peek('probe')),
    events,
    logger,
  });
  const brokerGuard = new Guard({
    name: 'rabbitmq',
    settings: config.breaker,
    timeoutMs: config.breaker.brokerTimeoutMs,
    code: ErrorCode.brokerUnavailable,
    probe: async () => (await consumerPool.openChannel()).close(),
    ignore: isAmqpRequestError,
    events,
    logger,
  });
  const guards = [redisGuard, brokerGuard];
  const openGuard = (): Guard | undefined => guards.find((guard) => guard.opened);
  redisStore?.guardWith((call) => redisGuard.run(call));
  const store: SeqStore = redisStore ?? new GuardedStore(rawStore, redisGuard);
  const consumerFactory = createInboxConsumerFactory(consumerPool, settings, logger);
  const consumers: ConsumerFactory = (user, prefetch, callbacks) => {
    const open = openGuard();
    if (open) return Promise.reject(new RelayError(ErrorCode.brokerUnavailable, `${open.name} unavailable: no new consumers`, { retryable: true }));
    let started: Promise<ConsumerHandle> | undefined;
    return brokerGuard
      .run(() => (started = consumerFactory(user, prefetch, callbacks)))
      .catch((error: unknown) => {
        // The breaker may give up (timeout) on a set-up that still completes: close that consumer,
        // or it would hold the queue's single-active-consumer slot with nobody behind it.
        started?.then((orphan) => orphan.close(), () => undefined);
        throw error;
      });
  };

  await declareSharedTopology(() => consumerPool.openChannel(), settings, {
    onQueueMismatch: (queue, error) => logger.warn({ queue, err: errorMessage(error) }, 'queue exists with other arguments; using it as it is'),
  });
  const mover = new UnroutedMover({
    pool: consumerPool,
    publish: (exchange, routingKey, body, properties) => brokerGuard.run(() => producer.publishRaw(exchange, routingKey, body, properties)),
    settings,
    logger,
    onMoved: () => events.emit('unrouted-moved'),
    onDeadLettered: (reason) => events.emit('dead-lettered', reason),
  });
  await mover.start();
  touch();

  const registry = new StreamRegistry({
    store,
    consumers,
    prefetch: config.windowMax,
    nackLimit: config.queueDeliveryLimit,
    maxMessageBytes: config.maxMessageBytes,
    lingerMs: config.streamLingerMs,
    storeAckIntervalMs: config.storeAckIntervalMs,
    logger,
    events,
  });

  const connections = new Set<ClientConnection>();
  let pendingHellos = 0;
  let listening = false;
  let draining: Promise<void> | undefined;
  const lag = new LagMonitor();
  const admission = new AdmissionControl(config.admission, Date.now());

  // Why delivery is paused on this whole node, if it is: a breaker open, or a resource alarm
  // (producers are blocked, so nothing new reaches inboxes; queued messages still flow and new
  // connections are still accepted). Every connection is told on each change.
  const nodeDegraded = (): string | undefined => {
    const open = openGuard();
    if (open) return `${open.name} unavailable`;
    return publisherPool.blocked !== undefined ? 'broker blocked: resource alarm' : undefined;
  };
  const tellConnections = (): void => {
    const reason = nodeDegraded();
    for (const connection of connections) connection.nodeStatus(reason);
  };
  events.on('breaker', (_name, state) => {
    // When a breaker closes, stalled consumers and numbering restart at once.
    if (state === 'closed' && !openGuard()) for (const stream of registry.values()) stream.retryNow();
    tellConnections();
  });
  events.on('broker-blocked', tellConnections);

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxPayloadBytes,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });

  /** Refuses an accepted WebSocket with 1013 and a jittered retry-after. */
  const shed = (ws: WebSocket, reason: AdmissionReason, retryAfterMs: number, detail: string): void => {
    events.emit('refused', reason);
    ws.on('error', () => undefined);
    ws.close(CloseCode.overloaded, retryAfterReason(retryAfterMs, detail));
    setTimeout(() => ws.terminate(), 5_000).unref();
  };

  const http = createServer((_request: IncomingMessage, response: ServerResponse) => {
    response.writeHead(426, { 'Content-Type': 'text/plain; charset=utf-8' });
    response.end('this endpoint speaks WebSocket: GET /v1/stream with subprotocol inbox-relay.v1\n');
  });
  http.on('upgrade', (request, socket, head) => {
    socket.on('error', () => socket.destroy());
    if (draining) return refuseUpgrade(socket, 503, 'relay is draining; reconnect to another node', { 'Retry-After': '1' });
    const check = checkUpgrade(request, config);
    if (!check.ok) {
      events.emit('handshake', check.status === 401 ? 'unauthenticated' : check.status === 403 ? 'forbidden' : 'refused');
      return refuseUpgrade(socket, check.status, check.message);
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      const open = openGuard();
      if (open) return shed(ws, 'dependency-unavailable', jitteredRetryAfter('dependency-unavailable'), `${open.name}-unavailable`);
      const admitted = admission.admit({ connections: connections.size, pendingHellos, eventLoopLagMs: lag.lagMs }, Date.now());
      if (!admitted.ok) return shed(ws, admitted.reason, admitted.retryAfterMs, admitted.reason);
      pendingHellos += 1;
      const connection = new ClientConnection(ws, {
        config,
        registry,
        logger,
        headerIdentity: check.identity,
        events,
        retryAfterMs: () => jitteredRetryAfter('dependency-unavailable'),
        onHelloSettled: () => {
          pendingHellos -= 1;
        },
        nodeDegraded,
        socket,
        onClose: (closed) => connections.delete(closed),
      });
      connections.add(connection);
    });
  });

  const heartbeat = setInterval(() => {
    for (const connection of connections) {
      if (connection.awaitingPong) {
        connection.terminate();
        continue;
      }
      connection.awaitingPong = true;
      connection.ping();
    }
  }, config.heartbeatMs);
  heartbeat.unref();

  const ackSweep = setInterval(
    () => {
      const now = Date.now();
      for (const connection of connections) connection.checkAckProgress(now);
    },
    Math.max(250, Math.min(config.ackTimeoutMs / 4, 5_000)),
  );
  ackSweep.unref();

  const metrics = createMetrics(events, {
    connections: () => connections.size,
    streams: () => registry.size,
    inflight: () => {
      let total = 0;
      for (const stream of registry.values()) total += stream.inflightCount;
      return total;
    },
    breakerStates: () => Object.fromEntries(guards.map((guard) => [guard.name, guard.state === 'open' ? 2 : guard.state === 'half-open' ? 1 : 0])),
  });

  const isReady = (): boolean => listening && !draining && !openGuard();
  const admin = createAdminServer(
    {
      ready: isReady,
      notReadyReason: () => (draining ? 'draining' : openGuard() ? `${openGuard()?.name} unavailable` : 'starting'),
      metrics: async () => ({ contentType: metrics.contentType, body: await metrics.render() }),
      drain: () => void drain().then(() => deps.onDrained?.()),
    },
    logger,
  );

  const port = await listen(http, config.port, config.host);
  const adminPort = await listen(admin, config.adminPort, config.host);
  listening = true;
  logger.info({ port, adminPort, queueType: config.queueType, store: rawStore.constructor.name }, 'inbox-relay listening');

  const drain = (): Promise<void> => {
    draining ??= (async () => {
      clearInterval(heartbeat);
      clearInterval(ackSweep);
      clearInterval(alarmProbe);
      logger.info({ connections: connections.size }, 'draining');
      for (const connection of [...connections]) connection.close(CloseCode.restarting, 'relay restarting');
      await mover.stop();
      await registry.closeAll();
      // Clients were sent 1012 above; one that has not finished the closing handshake by now is
      // cut, or closing the listener would wait for its socket.
      for (const client of wss.clients) client.terminate();
      http.closeAllConnections();
      await closeServer(http);
      await consumerPool.close();
      await producer.close();
      await publisherPool.close();
      // The store first: its last batch (acked marks of closing streams) still goes through the breaker.
      if (ownsStore) await rawStore.close();
      for (const guard of guards) guard.shutdown();
      lag.close();
      metrics.close();
      await closeServer(admin);
      logger.info('drained');
    })();
    return draining;
  };

  return {
    events,
    port,
    adminPort,
    store,
    registry,
    get connectionCount() {
      return connections.size;
    },
    get ready() {
      return isReady();
    },
    breakers: () => Object.fromEntries(guards.map((guard) => [guard.name, guard.state])),
    drain,
  };
}
