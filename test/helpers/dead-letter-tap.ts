/** A private queue on the dead-letter exchange (fanout): it sees every dead letter as it goes out. */
import amqp from 'amqplib';
import { DEAD_LETTER_EXCHANGE } from '../../src/amqp/topology.js';
import { rabbitmqUrl } from './relay.js';

export interface DeadLetterTap {
  /** The messageIds of the dead letters seen so far. */
  ids: Set<string>;
  close(): Promise<void>;
}

export async function tapDeadLetters(): Promise<DeadLetterTap> {
  const ids = new Set<string>();
  const connection = await amqp.connect(rabbitmqUrl());
  const channel = await connection.createChannel();
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, DEAD_LETTER_EXCHANGE, '');
  await channel.consume(
    queue,
    (message) => {
      if (typeof message?.properties.messageId === 'string') ids.add(message.properties.messageId);
    },
    { noAck: true },
  );
  return { ids, close: () => connection.close() };
}
