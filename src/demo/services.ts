/**
 * The demo's own connections to RabbitMQ and Redis: opened first, to say clearly when either
 * is missing, and used last, to delete what the run created (its inbox queues, its Redis keys).
 */
import amqp, { type ChannelModel } from 'amqplib';
import { Redis } from 'ioredis';
import { redactUrl } from '../cli/io.js';
import { errorMessage } from '../errors.js';
import { inboxQueueName } from '../amqp/topology.js';

const CONNECT_TIMEOUT_MS = 10_000;

/** RabbitMQ or Redis did not answer; `hint` says how to fix it. */
export class ServiceUnavailableError extends Error {
  override readonly name = 'ServiceUnavailableError';

  constructor(
    readonly service: 'RabbitMQ' | 'Redis',
    url: string,
    cause: unknown,
    readonly hint: string,
  ) {
    super(`${service} is not reachable at ${redactUrl(url)}: ${errorMessage(cause)}`, { cause });
  }
}

/** Open connections to both services; `close()` is idempotent. */
export class Services {
  private closing: Promise<void> | undefined;

  private constructor(
    private readonly amqpModel: ChannelModel,
    private readonly redis: Redis,
  ) {}

  /** Connects to both; rejects with {@link ServiceUnavailableError} naming the one that failed. */
  static async open(rabbitmqUrl: string, redisUrl: string): Promise<Services> {
    const redis = new Redis(redisUrl, {
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    // connect() rejects with a bare "Connection is closed"; the 'error' event says why.
    let lastError: unknown;
    redis.on('error', (error: unknown) => {
      lastError = error;
    });
    try {
      await redis.connect();
      await redis.ping();
    } catch (error) {
      redis.disconnect();
      throw new ServiceUnavailableError('Redis', redisUrl, lastError ?? error, 'start it (e.g. redis-server) or point REDIS_URL at it');
    }
    let model: ChannelModel;
    try {
      model = await amqp.connect(rabbitmqUrl, { timeout: CONNECT_TIMEOUT_MS, clientProperties: { connection_name: 'inbox-relay demo' } });
    } catch (error) {
      redis.disconnect();
      throw new ServiceUnavailableError(
        'RabbitMQ',
        rabbitmqUrl,
        error,
        'start it (e.g. rabbitmq-server -detached) or point RABBITMQ_URL at it',
      );
    }
    model.on('error', () => undefined);
    return new Services(model, redis);
  }

  /** Deletes each user's inbox queue (messages and all); returns how many were deleted. */
  async deleteInboxes(users: readonly string[]): Promise<number> {
    let deleted = 0;
    for (const user of users) {
      // A failed delete closes the channel it ran on: one channel per queue.
      const channel = await this.amqpModel.createChannel();
      channel.on('error', () => undefined);
      try {
        await channel.deleteQueue(inboxQueueName(user));
        deleted += 1;
      } finally {
        await channel.close().catch(() => undefined);
      }
    }
    return deleted;
  }

  /** Deletes every Redis key under `prefix`; returns how many. */
  async deleteKeys(prefix: string): Promise<number> {
    let deleted = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 200);
      cursor = next;
      if (keys.length > 0) deleted += await this.redis.unlink(...keys);
    } while (cursor !== '0');
    return deleted;
  }

  /** Closes both connections. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.amqpModel.close().catch(() => undefined);
      this.redis.disconnect();
    })();
    return this.closing;
  }
}
