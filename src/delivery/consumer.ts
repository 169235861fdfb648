/** The narrow view the delivery layer has of a RabbitMQ consumer (one per user on a node). */
export interface Delivery {
  /** Delivery tag: valid only on the consumer that received it. */
  tag: number;
  content: Buffer;
  messageId: unknown;
  contentType: unknown;
  timestamp: unknown;
  headers: Record<string, unknown> | undefined;
  redelivered: boolean;
  /** The routing key, when the message came through the topic exchange (`inbox.topics`); else absent. */
  topic?: string;
}

export interface ConsumerCallbacks {
  onDelivery(delivery: Delivery): void;
  /** The consumer is gone (channel or connection closed, cancelled by the broker). Its unacked messages went back to the queue. */
  onLost(reason: string): void;
}

export interface ConsumerHandle {
  /**
   * Acks one delivery, or with `multiple` every delivery up to `tag`; a multiple ack never settles
   * a delivery that is being dead-lettered (its copy not confirmed yet).
   */
  ack(tag: number, multiple: boolean): void;
  /**
   * Negative-acknowledges one delivery. `requeue:false` dead-letters it with `reason` (the
   * relay's `x-inbox-relay-reason`): the AMQP consumer publishes a copy with the reason and acks
   * the original once the copy is confirmed, or rejects it plainly if the copy fails. Either way
   * the tag counts as settled for the caller at once: it is not acked again.
   */
  reject(tag: number, requeue: boolean, reason?: string): void;
  /**
   * Resolves once the broker has processed every ack and reject sent before it on this
   * consumer's channel, dead letters included (a round trip on the same channel); rejects when
   * the channel is gone.
   */
  sync(): Promise<void>;
  /** Stops consuming and returns every unacked message to the queue, in order (by closing the channel). */
  close(): Promise<void>;
}

export type ConsumerFactory = (user: string, prefetch: number, callbacks: ConsumerCallbacks) => Promise<ConsumerHandle>;
