/**
 * The node bus as a step of the relay's start-up: on the store's Redis (same target and key
 * prefix, so nodes that share a store talk to each other), its state sent to the `node-bus` event
 * (metrics, readiness, status frames). A bus that cannot connect fails the start-up, naming Redis.
 */
import type { RelayConfig } from '../config.js';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import type { StartStep } from '../server/resource-stack.js';
import { describeRedis, type RedisTarget } from '../store/redis-target.js';
import type { NodeBus } from './node-bus.js';
import { RedisNodeBus } from './redis-node-bus.js';

export async function startNodeBus(
  redis: RedisTarget,
  config: RelayConfig,
  events: RelayEvents,
  logger: Logger,
  step: StartStep,
): Promise<NodeBus> {
  const bus = await step(
    'node bus',
    () =>
      new RedisNodeBus({
        url: redis,
        keyPrefix: config.redisKeyPrefix,
        nodeId: config.nodeId,
        commandTimeoutMs: config.redisCommandTimeoutMs,
        logger,
      }),
    (created) => created.close(),
  );
  bus.onState((state) => {
    events.emit('node-bus', state);
    logger.info({ state }, 'node bus');
  });
  await step('node bus connection', () =>
    bus.connect().catch((error: unknown) => {
      throw new RelayError(
        ErrorCode.storeUnavailable,
        `node bus: cannot connect to Redis at ${describeRedis(redis)}: ${errorMessage(error)}`,
        {
          cause: error,
          retryable: true,
        },
      );
    }),
  );
  return bus;
}
