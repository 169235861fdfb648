/**
 * Configuration: every option, its environment variable and its default in one place.
 * `loadConfig` validates at start-up and throws a RelayError naming the offending variable.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { NODE_ID_PATTERN } from './cluster/bus-message.js';
import { fail, int, list, onOff, read, type Env } from './config-read.js';
import { readBrokerUrls, readRedisTarget } from './connection-config.js';
import { JWT_DEFAULTS, loadJwt, type JwtConfig } from './jwt-config.js';
import { weakSecretReason } from './secret-strength.js';

export type { Env } from './config-read.js';
export type { JwtConfig } from './jwt-config.js';
import type { RedisTarget } from './store/redis-target.js';

export const DEFAULTS = {
  rabbitmqUrl: 'amqp://guest:guest@127.0.0.1:5672',
  rabbitmqHeartbeatS: 10,
  host: '0.0.0.0',
  port: 8080,
  adminHost: '127.0.0.1',
  adminPort: 9090,
  queueType: 'quorum',
  queueMaxLength: 10_000,
  queueDeliveryLimit: 20,
  windowDefault: 20,
  windowMax: 100,
  historyMaxCount: 1_000,
  historyMaxAgeMs: 60 * 60 * 1000,
  helloTimeoutMs: 10_000,
  upgradeTimeoutMs: 10_000,
  attachTimeoutMs: 10_000,
  heartbeatMs: 25_000,
  maxPayloadBytes: 64 * 1024,
  maxMessageBytes: 1024 * 1024,
  drainTimeoutMs: 10_000,
  streamLingerMs: 5_000,
  storeAckIntervalMs: 1_000,
  clusterHeartbeatMs: 1_000,
  publishTimeoutMs: 10_000,
  channelsPerConnection: 500,
  redisKeyPrefix: 'inbox-relay:',
  amqpConnectionName: 'inbox-relay',
  logLevel: 'info',
  ...JWT_DEFAULTS,
  ackTimeoutMs: 5 * 60 * 1000,
  sendBufferHighWaterBytes: 1024 * 1024,
  redisBreakerTimeoutMs: 3_000,
  brokerBreakerTimeoutMs: 15_000,
  breakerErrorPercent: 50,
  breakerResetMs: 5_000,
  breakerVolume: 5,
  breakerWindowMs: 5_000,
  maxConnections: 20_000,
  connectionRatePerSec: 500,
  connectionBurst: 1_000,
  maxPendingHellos: 2_000,
  // The listen backlog (gateway.ts): a reconnect storm that fills it is accepted whole, and each
  // client then gets a close code with a retry-after instead of a dropped socket.
  maxPendingUpgrades: 4_096,
  maxConnectionsPerUser: 10,
  authFailureRatePerAddress: 30,
  eventLoopLagShedMs: 500,
  frameRatePerSec: 50,
  frameBurst: 200,
  redisCommandTimeoutMs: 2_000,
  // A queue declaration is among the most expensive things a producer can make the broker do
  // (a quorum queue starts a Raft group): 20 a second is 72,000 an hour at most.
  unroutedProvisionRatePerSec: 20,
  publishHost: '127.0.0.1',
  publishMaxBatch: 100,
  // One message of MAX_MESSAGE_BYTES (1 MiB) with its JSON envelope, or a batch of small ones.
  publishMaxBodyBytes: 2 * 1024 * 1024,
} as const;

/**
 * NODE_ID's default, `<hostname>-<pid>`: characters a node id may not hold become `-`, and the
 * host name is cut so that the whole stays within 64 characters.
 */
export function defaultNodeId(host: string = hostname(), pid: number = process.pid): string {
  const suffix = `-${pid}`;
  const safe = host.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 64 - suffix.length);
  return `${safe || 'node'}${suffix}`;
}

export type QueueType = 'quorum' | 'classic';

export interface PublishApiConfig {
  /** PUBLISH_PORT; 0 picks a free port (tests). */
  port: number;
  /** PUBLISH_HOST: loopback unless the deployment opens it on purpose. */
  host: string;
  /** PUBLISH_TOKEN: every request needs `Authorization: Bearer <token>`; never logged. */
  token: string;
  /** PUBLISH_MAX_BATCH: messages in one request at most. */
  maxBatch: number;
  /** PUBLISH_MAX_BODY_BYTES: a request body larger than this gets 413. */
  maxBodyBytes: number;
}

export interface RelayConfig {
  /** This node's id among the relay's nodes (logs, node-to-node messages); unique per running process. */
  nodeId: string;
  /** The first of `rabbitmqUrls` (operator tools that need one node, the management API's default host). */
  rabbitmqUrl: string;
  /** RABBITMQ_URL: the broker's nodes, tried in order; a lost connection moves to the next. */
  rabbitmqUrls: string[];
  /** The AMQP heartbeat asked for (a URL's own `heartbeat` parameter wins): a silent link is noticed within about 2-3 of them. */
  rabbitmqHeartbeatS: number;
  /** REDIS_URL, when Redis is one server named by URL. */
  redisUrl: string | undefined;
  /** Unset: an in-memory state store, for a single node only. A URL (REDIS_URL), or Sentinel (REDIS_SENTINELS). */
  redis: RedisTarget | undefined;
  redisKeyPrefix: string;
  host: string;
  port: number;
  /** The admin listener's address: loopback unless the deployment opens it on purpose. */
  adminHost: string;
  /** 0 disables the admin listener (health, readiness, metrics). */
  adminPort: number;
  /** When set, POST /drain (and /metrics with `metricsRequireToken`) need `Authorization: Bearer <adminToken>`; never logged. */
  adminToken: string | undefined;
  /** /metrics needs the admin token too (ADMIN_TOKEN must be set). */
  metricsRequireToken: boolean;
  jwt: JwtConfig;
  /**
   * Browser origins allowed to upgrade (`scheme://host[:port]`, as browsers send them), or `*`
   * for any. Empty (the default): none, so that a page on another site cannot open a connection
   * with a user's token. Requests without an `Origin` header (not from a browser) are not affected.
   */
  allowedOrigins: '*' | string[];
  queueType: QueueType;
  queueMaxLength: number;
  queueDeliveryLimit: number;
  /** QUEUE_REPLICAS: replicas of a new quorum inbox (default 3 when RABBITMQ_URL lists 3+ nodes, else RabbitMQ's default). */
  queueReplicas: number | undefined;
  windowDefault: number;
  windowMax: number;
  historyMaxCount: number;
  historyMaxAgeMs: number;
  helloTimeoutMs: number;
  /**
   * From the TCP connection to a complete HTTP request (the upgrade): a socket that has not sent
   * one by then gets HTTP 408 and is closed.
   */
  upgradeTimeoutMs: number;
  /** A hello whose user stream is not ready within this long is closed with 1013 (the client retries). */
  attachTimeoutMs: number;
  heartbeatMs: number;
  maxPayloadBytes: number;
  maxMessageBytes: number;
  drainTimeoutMs: number;
  /** How long a user's consumer is kept after the last connection left, for a reconnect to reuse. */
  streamLingerMs: number;
  /** How long a user's acked mark may wait before it is written to Redis (acks in between become one write). */
  storeAckIntervalMs: number;
  /** How often a node tells the other nodes that hold connections of a user its head and acked mark (the bound on healing a lost notification). */
  clusterHeartbeatMs: number;
  publishTimeoutMs: number;
  channelsPerConnection: number;
  /** Prefix of the AMQP connection names shown by RabbitMQ (management UI, rabbitmqctl). */
  amqpConnectionName: string;
  /** A client with unacked messages that makes no ack progress this long is closed (1013). */
  ackTimeoutMs: number;
  /** Above this many buffered bytes a connection gets nothing more until its socket drains. */
  sendBufferHighWaterBytes: number;
  breaker: {
    /** A state-store call slower than this counts as a failure. */
    redisTimeoutMs: number;
    /** A broker set-up (declare, consume) or relay publish slower than this counts as a failure. */
    brokerTimeoutMs: number;
    errorThresholdPercent: number;
    resetTimeoutMs: number;
    volumeThreshold: number;
    windowMs: number;
  };
  admission: {
    maxConnections: number;
    connectionRatePerSec: number;
    connectionBurst: number;
    maxPendingHellos: number;
    /** Sockets accepted that have not sent a complete upgrade request; past it a new socket is closed at once. */
    maxPendingUpgrades: number;
    eventLoopLagShedMs: number;
  };
  /**
   * Connections one user may hold on this node (0: no limit); the next is closed after its hello
   * with 1008 `too many connections for this user`. A closed connection frees its slot at once.
   */
  maxConnectionsPerUser: number;
  /**
   * Failed authentications one source address may have per minute (and at once) before its
   * upgrades and hellos are refused unverified until it has one left; 0: no limit. Off behind a
   * proxy, where every client has the proxy's address.
   */
  authFailureRatePerAddress: number;
  /** Inbound frames per connection: sustained rate and burst; past it the connection is closed (1008). */
  frameRatePerSec: number;
  frameBurst: number;
  redisCommandTimeoutMs: number;
  /**
   * REPLAY_KEY, then REPLAY_KEY_PREVIOUS when set: the keys of the seal on operator replays of
   * dead letters (replay-seal.ts). The first seals (CLI), all are accepted (relay). Empty: no
   * replay header is honoured, and `dlq replay` refuses to run. Never logged.
   */
  replayKeys: string[];
  /** Inboxes the unrouted mover may declare per second (and at once): a cap on queue creations. */
  unroutedProvisionRatePerSec: number;
  /** The HTTP publish API; undefined (the default) when PUBLISH_PORT is not set. */
  publishApi: PublishApiConfig | undefined;
  logLevel: string;
  /**
   * LOG_PRETTY: 1 prints logs for humans (pino-pretty, a development dependency), 0 JSON;
   * unset (undefined): pretty when stdout is a terminal, JSON otherwise (log collectors).
   */
  logPretty: boolean | undefined;
}

/**
 * An allowed origin, in the form browsers send it (lowercase scheme and host, no default port, no
 * path); `null`, the origin of sandboxed and file pages, is refused: allowing it would allow them all.
 */
function serializedOrigin(entry: string): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(entry);
  } catch {
    return undefined;
  }
  const bare = parsed.pathname === '/' && !parsed.search && !parsed.hash && !parsed.username && !parsed.password;
  return bare && parsed.origin !== 'null' ? parsed.origin : undefined;
}

const origins = list.transform((entries, context): '*' | string[] => {
  if (entries.includes('*')) {
    if (entries.length > 1) context.addIssue({ code: 'custom', message: '* allows every origin and stands alone' });
    return '*';
  }
  return entries.map((entry) => {
    const origin = serializedOrigin(entry);
    if (origin === undefined) context.addIssue({ code: 'custom', message: `${entry} is not an origin like https://app.example[:port]` });
    return origin ?? entry;
  });
});

/** ADMIN_TOKEN, held to the same floor as JWT_SECRET (secret-strength.ts). */
function loadAdminToken(env: Env): string | undefined {
  const token = read(env, 'ADMIN_TOKEN', z.string(), undefined as string | undefined);
  if (token === undefined) return undefined;
  const weak = weakSecretReason(token);
  if (weak !== undefined) fail('ADMIN_TOKEN', weak);
  if (!/^[\x21-\x7e]+$/.test(token)) fail('ADMIN_TOKEN', 'must be printable ASCII without spaces (it travels in an HTTP header)');
  return token;
}

/**
 * The HTTP publish API: off unless PUBLISH_PORT is set, and then PUBLISH_TOKEN is required, held
 * to the same floor as JWT_SECRET (secret-strength.ts) and different from ADMIN_TOKEN (a producer
 * must not be able to drain a node).
 */
function loadPublishApi(env: Env, adminToken: string | undefined): PublishApiConfig | undefined {
  const port = read(env, 'PUBLISH_PORT', int(0, 65_535), undefined as number | undefined);
  if (port === undefined) {
    if (env.PUBLISH_TOKEN?.trim()) fail('PUBLISH_TOKEN', 'is set but PUBLISH_PORT is not: the publish API is off without a port');
    return undefined;
  }
  const token = read(env, 'PUBLISH_TOKEN', z.string(), undefined as string | undefined);
  if (token === undefined) {
    fail('PUBLISH_TOKEN', 'required when PUBLISH_PORT is set (producers send it as Authorization: Bearer <PUBLISH_TOKEN>)');
  }
  const weak = weakSecretReason(token);
  if (weak !== undefined) fail('PUBLISH_TOKEN', weak);
  if (!/^[\x21-\x7e]+$/.test(token)) fail('PUBLISH_TOKEN', 'must be printable ASCII without spaces (it travels in an HTTP header)');
  if (token === adminToken) fail('PUBLISH_TOKEN', 'must differ from ADMIN_TOKEN (producers must not be able to drain a node)');
  return {
    port,
    host: read(env, 'PUBLISH_HOST', z.string(), DEFAULTS.publishHost),
    token,
    maxBatch: read(env, 'PUBLISH_MAX_BATCH', int(1, 10_000), DEFAULTS.publishMaxBatch),
    maxBodyBytes: read(env, 'PUBLISH_MAX_BODY_BYTES', int(1_024, 256 * 1024 * 1024), DEFAULTS.publishMaxBodyBytes),
  };
}

/** REPLAY_KEY and REPLAY_KEY_PREVIOUS, held to the same floor as JWT_SECRET (secret-strength.ts). */
function loadReplayKeys(env: Env): string[] {
  const strong = (variable: string, value: string | undefined): string | undefined => {
    const weak = value === undefined ? undefined : weakSecretReason(value);
    if (weak !== undefined) fail(variable, weak);
    return value;
  };
  const current = strong('REPLAY_KEY', read(env, 'REPLAY_KEY', z.string(), undefined as string | undefined));
  const previous = strong('REPLAY_KEY_PREVIOUS', read(env, 'REPLAY_KEY_PREVIOUS', z.string(), undefined as string | undefined));
  if (previous === undefined) return current === undefined ? [] : [current];
  if (current === undefined) fail('REPLAY_KEY_PREVIOUS', 'needs REPLAY_KEY (the key replays are sealed with)');
  if (previous === current) fail('REPLAY_KEY_PREVIOUS', 'is the same as REPLAY_KEY');
  return [current, previous];
}

/** Reads and validates the configuration from environment variables. Does not modify `env`. */
export function loadConfig(env: Env = process.env): RelayConfig {
  const rabbitmqUrls = readBrokerUrls(env, DEFAULTS.rabbitmqUrl);
  const redis = readRedisTarget(env);
  const adminToken = loadAdminToken(env);
  const config: RelayConfig = {
    nodeId: read(env, 'NODE_ID', z.string().regex(NODE_ID_PATTERN, 'must be 1-64 of [A-Za-z0-9._:-]'), defaultNodeId()),
    rabbitmqUrl: rabbitmqUrls[0] ?? DEFAULTS.rabbitmqUrl,
    rabbitmqUrls,
    rabbitmqHeartbeatS: read(env, 'RABBITMQ_HEARTBEAT_S', int(1, 600), DEFAULTS.rabbitmqHeartbeatS),
    redisUrl: typeof redis === 'string' ? redis : undefined,
    redis,
    redisKeyPrefix: read(
      env,
      'REDIS_KEY_PREFIX',
      z.string().regex(/^[A-Za-z0-9._:-]{0,64}$/, 'must be up to 64 of [A-Za-z0-9._:-]'),
      DEFAULTS.redisKeyPrefix,
    ),
    host: read(env, 'HOST', z.string(), DEFAULTS.host),
    port: read(env, 'PORT', int(0, 65_535), DEFAULTS.port),
    adminHost: read(env, 'ADMIN_HOST', z.string(), DEFAULTS.adminHost),
    adminPort: read(env, 'ADMIN_PORT', int(0, 65_535), DEFAULTS.adminPort),
    adminToken,
    metricsRequireToken: read(env, 'METRICS_REQUIRE_TOKEN', onOff, false),
    jwt: loadJwt(env),
    allowedOrigins: read(env, 'ALLOWED_ORIGINS', origins, []),
    queueType: read(env, 'QUEUE_TYPE', z.enum(['quorum', 'classic'], { message: 'must be quorum or classic' }), DEFAULTS.queueType),
    queueMaxLength: read(env, 'QUEUE_MAX_LENGTH', int(1), DEFAULTS.queueMaxLength),
    queueDeliveryLimit: read(env, 'QUEUE_DELIVERY_LIMIT', int(1, 1000), DEFAULTS.queueDeliveryLimit),
    queueReplicas: read(env, 'QUEUE_REPLICAS', int(1, 9), rabbitmqUrls.length >= 3 ? 3 : undefined),
    windowDefault: read(env, 'WINDOW_DEFAULT', int(1, 65_535), DEFAULTS.windowDefault),
    windowMax: read(env, 'WINDOW_MAX', int(1, 65_535), DEFAULTS.windowMax),
    historyMaxCount: read(env, 'HISTORY_MAX_COUNT', int(0), DEFAULTS.historyMaxCount),
    historyMaxAgeMs: read(env, 'HISTORY_MAX_AGE_MS', int(0), DEFAULTS.historyMaxAgeMs),
    helloTimeoutMs: read(env, 'HELLO_TIMEOUT_MS', int(100), DEFAULTS.helloTimeoutMs),
    upgradeTimeoutMs: read(env, 'UPGRADE_TIMEOUT_MS', int(100, 3_600_000), DEFAULTS.upgradeTimeoutMs),
    attachTimeoutMs: read(env, 'ATTACH_TIMEOUT_MS', int(100), DEFAULTS.attachTimeoutMs),
    heartbeatMs: read(env, 'HEARTBEAT_MS', int(100), DEFAULTS.heartbeatMs),
    maxPayloadBytes: read(env, 'MAX_PAYLOAD_BYTES', int(256, 16 * 1024 * 1024), DEFAULTS.maxPayloadBytes),
    maxMessageBytes: read(env, 'MAX_MESSAGE_BYTES', int(1, 128 * 1024 * 1024), DEFAULTS.maxMessageBytes),
    drainTimeoutMs: read(env, 'DRAIN_TIMEOUT_MS', int(0), DEFAULTS.drainTimeoutMs),
    streamLingerMs: read(env, 'STREAM_LINGER_MS', int(0), DEFAULTS.streamLingerMs),
    storeAckIntervalMs: read(env, 'STORE_ACK_INTERVAL_MS', int(0), DEFAULTS.storeAckIntervalMs),
    clusterHeartbeatMs: read(env, 'CLUSTER_HEARTBEAT_MS', int(50, 60_000), DEFAULTS.clusterHeartbeatMs),
    publishTimeoutMs: read(env, 'PUBLISH_TIMEOUT_MS', int(1), DEFAULTS.publishTimeoutMs),
    channelsPerConnection: read(env, 'AMQP_CHANNELS_PER_CONNECTION', int(1, 2_000), DEFAULTS.channelsPerConnection),
    amqpConnectionName: read(env, 'AMQP_CONNECTION_NAME', z.string().min(1).max(100), DEFAULTS.amqpConnectionName),
    ackTimeoutMs: read(env, 'ACK_TIMEOUT_MS', int(1_000), DEFAULTS.ackTimeoutMs),
    sendBufferHighWaterBytes: read(env, 'SEND_BUFFER_HIGH_WATER_BYTES', int(1_024), DEFAULTS.sendBufferHighWaterBytes),
    breaker: {
      redisTimeoutMs: read(env, 'REDIS_BREAKER_TIMEOUT_MS', int(10), DEFAULTS.redisBreakerTimeoutMs),
      brokerTimeoutMs: read(env, 'BROKER_BREAKER_TIMEOUT_MS', int(10), DEFAULTS.brokerBreakerTimeoutMs),
      errorThresholdPercent: read(env, 'BREAKER_ERROR_PERCENT', int(1, 100), DEFAULTS.breakerErrorPercent),
      resetTimeoutMs: read(env, 'BREAKER_RESET_MS', int(10), DEFAULTS.breakerResetMs),
      volumeThreshold: read(env, 'BREAKER_VOLUME', int(1), DEFAULTS.breakerVolume),
      windowMs: read(env, 'BREAKER_WINDOW_MS', int(100), DEFAULTS.breakerWindowMs),
    },
    admission: {
      maxConnections: read(env, 'MAX_CONNECTIONS', int(1), DEFAULTS.maxConnections),
      connectionRatePerSec: read(env, 'CONNECTION_RATE_PER_SEC', int(1), DEFAULTS.connectionRatePerSec),
      connectionBurst: read(env, 'CONNECTION_BURST', int(1), DEFAULTS.connectionBurst),
      maxPendingHellos: read(env, 'MAX_PENDING_HELLOS', int(1), DEFAULTS.maxPendingHellos),
      maxPendingUpgrades: read(env, 'MAX_PENDING_UPGRADES', int(1, 1_000_000), DEFAULTS.maxPendingUpgrades),
      eventLoopLagShedMs: read(env, 'EVENT_LOOP_LAG_SHED_MS', int(1), DEFAULTS.eventLoopLagShedMs),
    },
    maxConnectionsPerUser: read(env, 'MAX_CONNECTIONS_PER_USER', int(0), DEFAULTS.maxConnectionsPerUser),
    authFailureRatePerAddress: read(env, 'AUTH_FAILURE_RATE_PER_ADDRESS', int(0, 1_000_000), DEFAULTS.authFailureRatePerAddress),
    frameRatePerSec: read(env, 'FRAME_RATE_PER_SEC', int(1), DEFAULTS.frameRatePerSec),
    frameBurst: read(env, 'FRAME_BURST', int(1), DEFAULTS.frameBurst),
    redisCommandTimeoutMs: read(env, 'REDIS_COMMAND_TIMEOUT_MS', int(10), DEFAULTS.redisCommandTimeoutMs),
    replayKeys: loadReplayKeys(env),
    unroutedProvisionRatePerSec: read(env, 'UNROUTED_PROVISION_RATE_PER_SEC', int(1, 100_000), DEFAULTS.unroutedProvisionRatePerSec),
    publishApi: loadPublishApi(env, adminToken),
    logLevel: read(env, 'LOG_LEVEL', z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), DEFAULTS.logLevel),
    logPretty: read(env, 'LOG_PRETTY', onOff.optional(), undefined),
  };
  if (config.windowDefault > config.windowMax) fail('WINDOW_DEFAULT', `must be <= WINDOW_MAX (${config.windowMax})`);
  if (config.metricsRequireToken && config.adminToken === undefined) fail('METRICS_REQUIRE_TOKEN', 'needs ADMIN_TOKEN to be set');
  return config;
}
