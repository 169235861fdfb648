import type { Message } from 'amqplib';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import type { ConsumerCallbacks, ConsumerFactory, ConsumerHandle } from '../delivery/consumer.js';
import type { ConnectionPool } from './connection-pool.js';
import { ConsumerSettlement, type DeadLetterOutcome } from './consumer-settlement.js';
import type { PublishDeadLetter } from './dead-letter-publisher.js';
import { TOPIC_EXCHANGE, inboxQueueName, provisionInbox, type QueueSettings } from './topology.js';

const CHANNEL_CLOSE_TIMEOUT_MS = 5_000;
/**
 * How long a close waits for dead letters whose copy is not confirmed yet: one that is not
 * settled by then comes back from RabbitMQ and is dead-lettered again (a possible duplicate).
 */
const DEAD_LETTER_WAIT_MS = 2_000;

function tagOnly(tag: number): Message {
  return { fields: { deliveryTag: tag } } as unknown as Message;
}

/** How the inbox consumers dead-letter: publish a copy with the reason (see ConsumerSettlement). */
export interface InboxDeadLetters {
  publish: PublishDeadLetter;
  /** A dead letter was settled: copied with its reason, or rejected plainly because the copy failed. */
  onSettled?: (outcome: DeadLetterOutcome) => void;
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
export function createInboxConsumerFactory(
  pool: ConnectionPool,
  settings: QueueSettings,
  logger: Logger,
  nodeId: string,
  deadLetters: InboxDeadLetters,
): ConsumerFactory {
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
    const settlement = new ConsumerSettlement({
      channel: {
        ack: (tag, multiple) => channel.ack(tagOnly(tag), multiple),
        nack: (tag, requeue) => channel.nack(tagOnly(tag), false, requeue),
      },
      queue,
      user,
      publish: deadLetters.publish,
      logger,
      ...(deadLetters.onSettled ? { onDeadLettered: deadLetters.onSettled } : {}),
    });
    const lose = (reason: string): void => {
      settlement.end();
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
          settlement.received(message.fields.deliveryTag, message.content, message.properties);
          callbacks.onDelivery({
            tag: message.fields.deliveryTag,
            content: message.content,
            messageId: message.properties.messageId,
            contentType: message.properties.contentType,
            timestamp: message.properties.timestamp,
            headers: message.properties.headers,
            redelivered: message.fields.redelivered,
            // A redelivery keeps the exchange and routing key it was first published with.
            ...(message.fields.exchange === TOPIC_EXCHANGE ? { topic: message.fields.routingKey } : {}),
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
      ack: (tag, multiple) => guarded(() => settlement.ack(tag, multiple)),
      reject: (tag, requeue, reason) =>
        guarded(() => {
          if (requeue) settlement.requeue(tag);
          else settlement.deadLetter(tag, reason ?? 'rejected');
        }),
      // A channel handles its frames in order: the answer to a passive declare sent after an ack
      // or reject means the broker has processed it. Dead letters are acked or rejected once their
      // copy is settled, so that comes first.
      sync: async () => {
        await settlement.settled();
        if (ended) throw new Error('channel closed');
        await channel.checkQueue(queue);
      },
      close: async () => {
        // Dead letters in flight get a moment to settle, so that a stream closing right after a
        // client's nack does not leave a copy in inbox.dead and the original to come back.
        if (!ended) await settledWithin(settlement.settled(), DEAD_LETTER_WAIT_MS);
        ended = true;
        settlement.end();
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
