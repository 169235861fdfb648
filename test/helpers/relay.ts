/** Starts relays in-process against the real broker and Redis, isolated by a unique Redis key prefix. */
import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import amqp from 'amqplib';
import { inject } from 'vitest';
import { loadConfig, type RelayConfig } from '../../src/config.js';
import { createLogger } from '../../src/log.js';
import { signDevToken } from '../../src/server/auth.js';
import { startRelay, type Relay } from '../../src/server/relay.js';
import { Producer } from '../../src/amqp/producer.js';
import { inboxQueueName } from '../../src/amqp/topology.js';
import { isRelayError } from '../../src/errors.js';
import type { SeqStore } from '../../src/store/store.js';

export const TEST_SECRET = 'test-secret-0123456789-abcdefghijklmnopqrstuvwxyz';
/** The relays' and the operator CLI's REPLAY_KEY in tests (replays of dead letters are sealed with it). */
export const TEST_REPLAY_KEY = 'test-replay-9876543210-zyxwvutsrqponmlkjihgfedcba';

/**
 * A unique name for a user, a key prefix or a connection. Under the global setup (integration and
 * chaos projects) each is written to the run's id log, whose teardown deletes the queues and Redis
 * keys named after them; the unit project has no setup and creates nothing to delete.
 */
export function uid(prefix = 't'): string {
  const id = `${prefix}-${randomUUID().slice(0, 12)}`;
  const idLog = inject('idLog') as string | undefined;
  if (idLog !== undefined) appendFileSync(idLog, `${id}\n`);
  return id;
}

export function rabbitmqUrl(): string {
  return inject('rabbitmqUrl');
}

export function redisUrl(db?: number): string {
  const url = inject('redisUrl');
  return db === undefined ? url : `${url.replace(/\/\d*$/, '')}/${db}`;
}

export function testEnv(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    RABBITMQ_URL: rabbitmqUrl(),
    REDIS_URL: redisUrl(),
    REDIS_KEY_PREFIX: `${uid('test')}:`,
    JWT_SECRET: TEST_SECRET,
    REPLAY_KEY: TEST_REPLAY_KEY,
    PORT: '0',
    ADMIN_PORT: '0',
    HOST: '127.0.0.1',
    LOG_LEVEL: process.env.DEBUG_RELAY_LOG ?? 'silent',
    // Tests share two cores with the broker and with each other; shedding on event-loop lag is
    // tested on its own (test/chaos), so it does not refuse connections here.
    EVENT_LOOP_LAG_SHED_MS: '60000',
    ...overrides,
  };
}

export function testConfig(overrides: Record<string, string | undefined> = {}): RelayConfig {
  return loadConfig(testEnv(overrides));
}

export interface TestRelay {
  relay: Relay;
  config: RelayConfig;
  url: string;
  stop(): Promise<void>;
}

export async function startTestRelay(config: RelayConfig, store?: SeqStore): Promise<TestRelay> {
  const relay = await startRelay(config, { logger: createLogger(config.logLevel), ...(store ? { store } : {}) });
  return { relay, config, url: `ws://127.0.0.1:${relay.port}/v1/stream`, stop: () => relay.drain() };
}

export function token(user: string, expiresInSeconds = 3600): string {
  return signDevToken(user, TEST_SECRET, { expiresInSeconds });
}

/**
 * A producer for tests that behaves as producers should: a publish RabbitMQ refused or did not
 * confirm (a quorum queue can nack while it is busy) is retried with the same messageId, so
 * every message the test counts as published was confirmed exactly as one message.
 */
export function testProducer(config: RelayConfig): Producer {
  const producer = new Producer({
    url: config.rabbitmqUrl,
    connectionName: `${config.amqpConnectionName} producer`,
    provision: { queueType: config.queueType, queueMaxLength: config.queueMaxLength, queueDeliveryLimit: config.queueDeliveryLimit },
  });
  const publish = producer.publish.bind(producer);
  producer.publish = async (userId, data, options = {}) => {
    const messageId = options.messageId ?? randomUUID();
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await publish(userId, data, { ...options, messageId });
      } catch (error) {
        if (attempt >= 5 || !isRelayError(error) || !error.retryable) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  };
  return producer;
}

/** Ready and consumer counts of a user's inbox queue, read with a passive declare (diagnostics). */
export async function queueCounts(user: string): Promise<{ ready: number; consumers: number }> {
  const connection = await amqp.connect(rabbitmqUrl());
  try {
    const channel = await connection.createChannel();
    const { messageCount, consumerCount } = await channel.checkQueue(inboxQueueName(user));
    return { ready: messageCount, consumers: consumerCount };
  } finally {
    await connection.close().catch(() => undefined);
  }
}
