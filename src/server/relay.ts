/**
 * The composition root: builds the relay from its configuration (state store, AMQP pools,
 * topology, unrouted mover, user streams, WebSocket and admin listeners) and owns all of them.
 * `drain()` is the shutdown order of STYLE.md: readiness off, no new upgrades, clients told to
 * reconnect (1012), in-flight messages released to RabbitMQ in order, channels closed, store closed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';
import type { RelayConfig } from '../config.js';
import { errorMessage } from '../errors.js';
import { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { CloseCode } from '../protocol/close-codes.js';
import { SUBPROTOCOL } from '../protocol/frames.js';
import { ConnectionPool } from '../amqp/connection-pool.js';
import { createInboxConsumerFactory } from '../amqp/inbox-consumer.js';
import { Producer } from '../amqp/producer.js';
import { declareSharedTopology } from '../amqp/topology.js';
import { UnroutedMover } from '../amqp/unrouted-mover.js';
import { StreamRegistry } from '../delivery/stream-registry.js';
import { MemoryStore } from '../store/memory-store.js';
import { RedisStore } from '../store/redis-store.js';
import type { SeqStore } from '../store/store.js';
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
  readonly ready: boolean;
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

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** A retry-after between 1 and 3 s, spread so that refused clients do not return together. */
export function jitteredRetryAfterMs(baseMs = 1_000, spreadMs = 2_000): number {
  return Math.round(baseMs + Math.random() * spreadMs);
}

export async function startRelay(config: RelayConfig, deps: RelayDependencies): Promise<Relay> {
  const { logger } = deps;
  const events = new RelayEvents();
  const settings = { queueType: config.queueType, queueMaxLength: config.queueMaxLength, queueDeliveryLimit: config.queueDeliveryLimit };
  const limits = { maxCount: config.historyMaxCount, maxAgeMs: config.historyMaxAgeMs };
  let store: SeqStore;
  let ownsStore = false;
  if (deps.store) {
    store = deps.store;
  } else if (config.redisUrl) {
    const redisStore = new RedisStore({ url: config.redisUrl, keyPrefix: config.redisKeyPrefix, limits });
    await redisStore.connect();
    store = redisStore;
    ownsStore = true;
  } else {
    logger.warn('REDIS_URL is not set: using an in-memory state store, fit for a single node only (a restart resets every epoch)');
    store = new MemoryStore(limits);
    ownsStore = true;
  }

  const consumerPool = new ConnectionPool({
    url: config.rabbitmqUrl,
    name: 'inbox-relay consumer',
    channelsPerConnection: config.channelsPerConnection,
    logger,
  });
  const publisherPool = new ConnectionPool({ url: config.rabbitmqUrl, name: 'inbox-relay publisher', channelsPerConnection: 64, logger });
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
    logger.warn({ reason }, 'RabbitMQ blocks publishing (resource alarm)');
  });
  publisherPool.on('unblocked', () => {
    events.emit('broker-blocked', false);
    logger.info('RabbitMQ unblocked publishing');
  });

  await declareSharedTopology(() => consumerPool.openChannel(), settings, {
    onQueueMismatch: (queue, error) => logger.warn({ queue, err: errorMessage(error) }, 'queue exists with other arguments; using it as it is'),
  });
  const mover = new UnroutedMover({
    pool: consumerPool,
    producer,
    settings,
    logger,
    onMoved: () => events.emit('unrouted-moved'),
    onDeadLettered: (reason) => events.emit('dead-lettered', reason),
  });
  await mover.start();

  const registry = new StreamRegistry({
    store,
    consumers: createInboxConsumerFactory(consumerPool, settings, logger),
    prefetch: config.windowMax,
    nackLimit: config.queueDeliveryLimit,
    maxMessageBytes: config.maxMessageBytes,
    logger,
    events,
  });

  const connections = new Set<ClientConnection>();
  let ready = false;
  let draining: Promise<void> | undefined;

  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: config.maxPayloadBytes,
    perMessageDeflate: false,
    handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
  });

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
      const connection = new ClientConnection(ws, {
        config,
        registry,
        logger,
        headerIdentity: check.identity,
        events,
        retryAfterMs: () => jitteredRetryAfterMs(),
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

  const admin = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (path === '/healthz') {
      response.writeHead(200, { 'Content-Type': 'text/plain' }).end('ok\n');
    } else if (path === '/drain' && request.method === 'POST') {
      response.writeHead(202, { 'Content-Type': 'text/plain' }).end('draining\n');
      logger.info('drain requested on the admin port');
      void drain().then(() => deps.onDrained?.());
    } else if (path === '/readyz') {
      response.writeHead(ready ? 200 : 503, { 'Content-Type': 'text/plain' }).end(ready ? 'ready\n' : 'not ready\n');
    } else {
      response.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    }
  });

  const port = await listen(http, config.port, config.host);
  const adminPort = await listen(admin, config.adminPort, config.host);
  ready = true;
  logger.info({ port, adminPort, queueType: config.queueType, store: store.constructor.name }, 'inbox-relay listening');

  const drain = (): Promise<void> => {
    draining ??= (async () => {
      ready = false;
      clearInterval(heartbeat);
      logger.info({ connections: connections.size }, 'draining');
      for (const connection of [...connections]) connection.close(CloseCode.restarting, 'relay restarting');
      await mover.stop();
      await registry.closeAll();
      await closeServer(http);
      for (const client of wss.clients) client.terminate();
      await consumerPool.close();
      await producer.close();
      await publisherPool.close();
      if (ownsStore) await store.close();
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
      return ready;
    },
    drain,
  };
}
