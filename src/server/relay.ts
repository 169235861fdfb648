/**
 * The composition root: starts the relay's dependencies (dependencies.ts), the user streams, the
 * WebSocket gateway (gateway.ts), metrics and the admin listener, and owns all of them. A start
 * that fails at any step closes what the earlier steps opened before it rejects. `drain()` is the
 * shutdown order: readiness off, no new upgrades, clients told to reconnect (1012),
 * in-flight messages released to RabbitMQ in order, presence removed (offline events out),
 * channels closed, store closed.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RelayConfig } from '../config.js';
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { CloseCode } from '../protocol/close-codes.js';
import { StreamRegistry } from '../delivery/stream-registry.js';
import { createMetrics, type RelayMetrics } from '../metrics/metrics.js';
import type { SeqStore } from '../store/store.js';
import type { NodeBus } from '../cluster/node-bus.js';
import { createAdminServer } from './admin-server.js';
import { backgroundClock, type BackgroundClock } from '../delivery/background-clock.js';
import { startDependencies, type Dependencies } from './dependencies.js';
import { Gateway, closeServer, listen } from './gateway.js';
import { ResourceStack } from './resource-stack.js';
import { securityWarnings } from './security-warnings.js';
import { TokenKeys, type KeyReload } from './token-keys.js';
import { ReplaySeal } from '../delivery/replay-seal.js';
import { PublishApi } from '../publish/publish-api.js';
import { PresenceTracker } from '../presence/presence-tracker.js';
import { readPresence } from '../presence/presence-store.js';

export interface Relay {
  /** Metrics and logs listen here. */
  readonly events: RelayEvents;
  readonly port: number;
  readonly adminPort: number;
  /** The address the admin listener is bound to (ADMIN_HOST as the system resolved it). */
  readonly adminHost: string;
  /** The HTTP publish API's port (PUBLISH_PORT), undefined when it is off. */
  readonly publishPort: number | undefined;
  readonly store: SeqStore;
  readonly registry: StreamRegistry;
  /** How this node talks to the other nodes (undefined without REDIS_URL: a single node). */
  readonly bus: NodeBus | undefined;
  /** Open client connections. */
  readonly connectionCount: number;
  /** Sockets accepted that have not completed their upgrade request (bounded by MAX_PENDING_UPGRADES). */
  readonly pendingUpgradeCount: number;
  /** Accepting connections: not draining and no breaker open. */
  readonly ready: boolean;
  /** Breaker states by name. */
  breakers(): Record<string, 'open' | 'half-open' | 'closed'>;
  /** Graceful shutdown (see the module comment). Idempotent. */
  drain(): Promise<void>;
  /**
   * Reads JWT_KEYS_FILE again (main.ts on SIGHUP) and logs the kids now in use, or the error and
   * the kids kept: a file that does not parse leaves the key set as it was. Connections already
   * open are not checked again; each keeps its token until `exp`.
   */
  reloadKeys(): KeyReload;
}

export interface RelayDependencies {
  logger: Logger;
  /** Use this store instead of the configured one (tests); the relay does not close it. */
  store?: SeqStore;
  /** Called when a drain requested on the admin port (POST /drain) finished; main exits then. */
  onDrained?: () => void;
  /** Time and timers of the sweeps and connections (the system clock when omitted). */
  clock?: BackgroundClock;
}

/** Starts a relay node; on failure, everything it opened is closed before the promise rejects. */
export async function startRelay(config: RelayConfig, options: RelayDependencies): Promise<Relay> {
  const { logger } = options;
  for (const warning of securityWarnings(config)) logger.warn({ settings: warning.settings }, warning.message);
  const clock = options.clock ?? backgroundClock;
  const events = new RelayEvents();
  const deps = await startDependencies(config, { logger, events, clock, ...(options.store ? { store: options.store } : {}) });
  // What start-up opened from here on; closed newest first if a later step fails.
  const started = new ResourceStack((name, error) => logger.warn({ resource: name, err: errorMessage(error) }, 'close failed'));
  started.add('dependencies', () => deps.close());
  try {
    return await assemble(config, options, clock, events, deps, started);
  } catch (error) {
    logger.error({ err: errorMessage(error) }, 'start-up failed; closed what was started');
    await started.close();
    throw error;
  }
}

async function assemble(
  config: RelayConfig,
  options: RelayDependencies,
  clock: BackgroundClock,
  events: RelayEvents,
  deps: Dependencies,
  started: ResourceStack,
): Promise<Relay> {
  const { logger } = options;
  const tokenKeys = new TokenKeys(config.jwt, { logger });
  if (config.jwt.keysFile !== undefined) logger.info({ file: config.jwt.keysFile, kids: tokenKeys.fileKids }, 'JWT key set loaded');
  if (config.jwt.jwksUrl !== undefined) {
    // Origin and path only: credentials or a query string in the URL stay out of the log.
    const { origin, pathname } = new URL(config.jwt.jwksUrl);
    logger.info({ jwks: `${origin}${pathname}` }, 'JWT keys from the JWKS, by kid');
  }
  const replaySeal = config.replayKeys.length > 0 ? new ReplaySeal(config.replayKeys) : undefined;
  if (replaySeal)
    logger.info(
      { keyFingerprint: replaySeal.fingerprint(), keys: config.replayKeys.length },
      'replays of dead letters are checked with REPLAY_KEY',
    );
  const registry = new StreamRegistry({
    store: deps.store,
    consumers: deps.consumers,
    prefetch: config.windowMax,
    nackLimit: config.queueDeliveryLimit,
    maxMessageBytes: config.maxMessageBytes,
    replaySeal,
    receipts: deps.receipts,
    lingerMs: config.streamLingerMs,
    storeAckIntervalMs: config.storeAckIntervalMs,
    logger,
    events,
    ...(deps.bus ? { bus: deps.bus, clusterHeartbeatMs: config.clusterHeartbeatMs } : {}),
  });
  started.add('streams', () => registry.closeAll());
  const presence = deps.presence
    ? new PresenceTracker({ store: deps.presence.store, publish: deps.presence.publish, nodeId: config.nodeId, clock, logger, events })
    : undefined;
  if (presence) started.add('presence', () => presence.close());
  else logger.info('presence is off: it needs Redis (REDIS_URL or REDIS_SENTINELS)');
  const gateway = new Gateway({
    config,
    registry,
    events,
    logger,
    clock,
    unavailable: () => deps.openGuard()?.name,
    nodeDegraded: () => deps.nodeDegraded(),
    tokenKeys,
    ...(presence ? { presence } : {}),
  });
  started.add('gateway', () => gateway.close());
  events.on('breaker', (_name, state) => {
    // When a breaker closes, stalled consumers and numbering restart at once.
    if (state === 'closed' && !deps.openGuard()) for (const stream of registry.values()) stream.retryNow();
    gateway.tellConnections();
  });
  events.on('broker-blocked', () => gateway.tellConnections());
  events.on('node-bus', () => gateway.tellConnections());

  const metrics: RelayMetrics = createMetrics(events, {
    nodeId: config.nodeId,
    connections: () => gateway.connectionCount,
    streams: () => registry.size,
    inflight: () => {
      let total = 0;
      for (const stream of registry.values()) total += stream.inflightCount;
      return total;
    },
    breakerStates: () =>
      Object.fromEntries(deps.guards.map((guard) => [guard.name, guard.state === 'open' ? 2 : guard.state === 'half-open' ? 1 : 0])),
  });
  started.add('metrics', () => metrics.close());
  // The bus connected before the metrics listened: its state so far (changes come as events).
  if (deps.bus) events.emit('node-bus', deps.bus.state);

  let listening = false;
  let draining: Promise<void> | undefined;
  const busDown = (): boolean => deps.bus !== undefined && deps.bus.state !== 'connected';
  const isReady = (): boolean => listening && !draining && !deps.openGuard() && !busDown();
  const admin: Server = createAdminServer(
    {
      ready: isReady,
      notReadyReason: () =>
        draining
          ? 'draining'
          : deps.openGuard()
            ? `${deps.openGuard()?.name} unavailable`
            : busDown() && listening
              ? 'node bus unavailable'
              : 'starting',
      metrics: async () => ({ contentType: metrics.contentType, body: await metrics.render() }),
      drain: () =>
        background(
          drain().then(() => options.onDrained?.()),
          (error) => logger.error({ err: errorMessage(error) }, 'drain failed'),
        ),
    },
    logger,
    { token: config.adminToken, metricsRequireToken: config.metricsRequireToken },
  );
  started.add('admin listener', () => closeServer(admin));
  const presenceStore = deps.presence?.store;
  const publishApi = config.publishApi
    ? new PublishApi({
        config: config.publishApi,
        maxMessageBytes: config.maxMessageBytes,
        publish: (message) => deps.publishMessage(message),
        unavailable: () => {
          const blocked = deps.publishBlocked();
          if (blocked !== undefined)
            return { error: 'broker-blocked', message: `RabbitMQ is blocking publishers (${blocked}); retry later` };
          const open = deps.openGuard();
          if (open) return { error: 'unavailable', message: `${open.name} unavailable (breaker open); retry later` };
          return undefined;
        },
        presence: presenceStore && ((user) => readPresence(presenceStore, user)),
        // Requests in flight wait for their confirms (PUBLISH_TIMEOUT_MS at most).
        closeWaitMs: config.publishTimeoutMs + 1_000,
        events,
        logger,
      })
    : undefined;
  if (publishApi) started.add('publish listener', () => publishApi.close());

  const port = await gateway.listen();
  const adminPort = await listen(admin, config.adminPort, config.adminHost);
  const adminHost = (admin.address() as AddressInfo).address;
  const publishPort = publishApi ? await publishApi.listen() : undefined;
  listening = true;
  logger.info({ port, adminPort, adminHost, publishPort, queueType: config.queueType, store: deps.storeKind }, 'inbox-relay listening');

  const drain = (): Promise<void> => {
    draining ??= (async () => {
      gateway.stopAccepting();
      // Publish requests in flight are answered (their confirms come); new ones get 503.
      const publishClosed = publishApi?.close();
      logger.info({ connections: gateway.connectionCount }, 'draining');
      // Consumers first: another node with connections of a user becomes its active consumer
      // while the connections here still receive (from that node); then they reconnect elsewhere.
      if (deps.bus) await registry.releaseConsumers();
      gateway.closeConnections(CloseCode.restarting, 'relay restarting');
      await deps.quiesce();
      await registry.closeAll();
      await gateway.close();
      // Every connection closed above: their removes go out, and the offline events they cause.
      await presence?.close();
      await publishClosed;
      // Producer, AMQP connections, store (its last batch still goes through the breaker), breakers.
      await deps.close();
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
    adminHost,
    publishPort,
    store: deps.store,
    registry,
    bus: deps.bus,
    get connectionCount() {
      return gateway.connectionCount;
    },
    get pendingUpgradeCount() {
      return gateway.pendingUpgradeCount;
    },
    get ready() {
      return isReady();
    },
    breakers: () => Object.fromEntries(deps.guards.map((guard) => [guard.name, guard.state])),
    drain,
    reloadKeys: () => {
      const reload = tokenKeys.reloadKeysFile();
      switch (reload.outcome) {
        case 'reloaded':
          logger.info({ file: reload.file, kids: reload.kids }, 'JWT key set reloaded');
          break;
        case 'failed':
          logger.error(
            { file: reload.file, err: reload.error, kids: reload.keptKids },
            'JWT key set not reloaded; the previous keys stay in use',
          );
          break;
        case 'no-file':
          logger.info('no JWT_KEYS_FILE to reload');
          break;
      }
      return reload;
    },
  };
}
