import type { Message } from 'amqplib';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import type { ConsumerCallbacks, ConsumerFactory, ConsumerHandle } from '../delivery/consumer.js';
import type { ConnectionPool } from './connection-pool.js';
import { inboxQueueName, provisionInbox, type QueueSettings } from './topology.js';

const CHANNEL_CLOSE_TIMEOUT_MS = 5_000;

function tagOnly(tag: number): Message {
  return { fields: { deliveryTag: tag } } as unknown as Message;
}

/**
 * Consumers of users' inbox queues, each on a channel of its own: a channel error (such as a
 * stray ack) then ends one user's consumer only, and closing the channel returns that user's
 * unacked messages to the queue in order before another consumer can become active.
 *
 * Each consumer's tag is `inbox-relay.<nodeId>.<n>`: RabbitMQ lists a queue's consumers with
 * their tags and which one is active, so an operator (and `inbox-relay inspect`) can tell which
 * node owns a user and which nodes wait to take over.
 */
export function createInboxConsumerFactory(pool: ConnectionPool, settings: QueueSettings, logger: Logger, nodeId: string): ConsumerFactory {
  const provisioned = new Set<string>();
  let consumers = 0;
  return async (user: string, prefetch: number, callbacks: ConsumerCallbacks): Promise<ConsumerHandle> => {
    const queue = inboxQueueName(user);
    if (!provisioned.has(user)) {
      await provisionInbox(() => pool.openChannel(), user, settings, {
        onQueueMismatch: (name, error) =>
          logger.warn({ queue: name, err: errorMessage(error) }, 'queue exists with other arguments; using it as it is'),
      });
      if (provisioned.size > 100_000) provisioned.clear();
      provisioned.add(user);
    }
    const channel = await pool.openChannel();
    let ended = false;
    const lose = (reason: string): void => {
      if (ended) return;
      ended = true;
      callbacks.onLost(reason);
    };
    channel.once('close', () => lose('channel closed'));
    try {
      await channel.prefetch(prefetch, false);
      await channel.consume(
        queue,
        (message) => {
          if (message === null) {
            lose('consumer cancelled by the broker');
            channel.close().catch(() => undefined);
            return;
          }
          callbacks.onDelivery({
            tag: message.fields.deliveryTag,
            content: message.content,
            messageId: message.properties.messageId,
            contentType: message.properties.contentType,
            timestamp: message.properties.timestamp,
            headers: message.properties.headers,
            redelivered: message.fields.redelivered,
          });
        },
        { noAck: false, consumerTag: consumerTag(nodeId, (consumers += 1)) },
      );
    } catch (error) {
      ended = true;
      provisioned.delete(user);
      await channel.close().catch(() => undefined);
      throw error;
    }
    const guarded = (action: () => void): void => {
      if (ended) return;
      try {
        action();
      } catch (error) {
        logger.warn({ user, err: errorMessage(error) }, 'ack on a closed channel');
      }
    };
    return {
      ack: (tag, multiple) => guarded(() => channel.ack(tagOnly(tag), multiple)),
      reject: (tag, requeue) => guarded(() => channel.nack(tagOnly(tag), false, requeue)),
      // A channel handles its frames in order: the answer to a passive declare sent after a
      // reject means the broker has processed the reject.
      sync: async () => {
        if (ended) throw new Error('channel closed');
        await channel.checkQueue(queue);
      },
      close: async () => {
        ended = true;
        // RabbitMQ 3.10 can crash a channel (a consume on an unavailable quorum queue fails with
        // noproc and takes the connection down); a close-ok that never comes must not hold the
        // stream, a drain or the user's next connection. The connection's end frees the channel.
        if (!(await settledWithin(channel.close(), CHANNEL_CLOSE_TIMEOUT_MS))) {
          logger.warn({ user, timeoutMs: CHANNEL_CLOSE_TIMEOUT_MS }, 'channel close not confirmed in time; going on');
        }
      },
    };
  };
}

/** The tag of this node's `n`th consumer (see createInboxConsumerFactory). */
export function consumerTag(nodeId: string, n: number): string {
  return `${CONSUMER_TAG_PREFIX}${nodeId}.${n}`;
}

export const CONSUMER_TAG_PREFIX = 'inbox-relay.';

/** The node id in a tag made by `consumerTag`, or undefined for any other tag. */
export function consumerTagNode(tag: string): string | undefined {
  if (!tag.startsWith(CONSUMER_TAG_PREFIX)) return undefined;
  const rest = tag.slice(CONSUMER_TAG_PREFIX.length);
  const end = rest.lastIndexOf('.');
  return end > 0 ? rest.slice(0, end) : undefined;
}
