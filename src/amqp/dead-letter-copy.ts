/**
 * The relay's own dead letters: why it dead-letters a message (the reasons), and the copy it
 * publishes to `inbox.dlx` in place of a plain reject. No I/O.
 *
 * A reject (`nack` with `requeue:false`) cannot add a header: RabbitMQ's `x-death` then only says
 * `rejected`. So the relay publishes a copy that carries its reason (DeadLetterPublisher) and acks
 * the original once RabbitMQ confirmed the copy (consumer-settlement.ts, unrouted-mover.ts).
 *
 * The copy keeps the body and every property of the original (messageId, contentType, timestamp,
 * correlationId, type, appId, priority, the producer's headers, a replay mark and its seal), except:
 * - `expiration`: `inbox.dead` has no dead-letter exchange, so a copy that expired there would
 *   be gone;
 * - `userId`: RabbitMQ refuses a publish whose userId is not the publishing connection's user;
 * - the broker's dead-lettering headers (`x-death`, `x-first-death-*`, `x-last-death-*`) and
 *   `x-delivery-count`, which only a message that died before can carry: a copy the relay made is
 *   told apart from RabbitMQ's dead letters by having none (src/cli/dead-letter.ts reads the
 *   relay's headers only then, so a producer cannot pass a forged reason off as the relay's);
 * and it adds the relay's headers: the reason, the user, the queue it came from and when.
 */
import type { MessageProperties, Options } from 'amqplib';
import { DEAD_LETTER_AT_HEADER, DEAD_LETTER_QUEUE_HEADER, DEAD_LETTER_REASON_HEADER, DEAD_LETTER_USER_HEADER } from './topology.js';

/** Every reason the relay dead-letters a message for (`x-inbox-relay-reason`). */
export const DeadLetterReason = {
  /** A client sent `nack` with `requeue:false`. */
  clientNack: 'client-nack',
  /** A client nacked the same seq with `requeue:true` more than QUEUE_DELIVERY_LIMIT times. */
  nackLimit: 'nack-limit',
  /** No valid messageId, or a body that is not JSON under a JSON content type. */
  invalidMessage: 'invalid-message',
  /** A body over MAX_MESSAGE_BYTES. */
  tooLarge: 'too-large',
  /** The message asks for a delivery receipt (`inbox-receipt`) but has no valid messageId to name it by. */
  receiptWithoutMessageId: 'receipt-without-message-id',
  /** From `inbox.unrouted`: the routing key is not a valid user id. */
  invalidUserId: 'invalid-user-id',
  /** From `inbox.unrouted`: the user's inbox refused the copy (full). */
  unroutableInboxFull: 'unroutable-inbox-full',
} as const;

export type DeadLetterReasonValue = (typeof DeadLetterReason)[keyof typeof DeadLetterReason];

export const DEAD_LETTER_REASONS: readonly DeadLetterReasonValue[] = Object.values(DeadLetterReason);

/** What the relay writes on a copy besides the original's properties. */
export interface DeadLetterLabel {
  reason: string;
  /** The queue the original was consumed from (`inbox.<user>`, `inbox.unrouted`). */
  queue: string;
  /** Whose message it was; undefined when no valid user id names it (invalid-user-id). */
  user: string | undefined;
  /** When the relay dead-lettered it (ms since the epoch). */
  at: number;
}

/** The parts of a delivered message a copy is made from. */
export interface CopySource {
  content: Buffer;
  properties: MessageProperties;
}

const BROKER_DEATH_HEADERS = /^x-(death|first-death-.*|last-death-.*|delivery-count)$/;
const RELAY_LABEL_HEADERS: ReadonlySet<string> = new Set([
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_USER_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_AT_HEADER,
]);

/** The publish options of the copy of a message with these properties (see the module comment). */
export function deadLetterCopyOptions(properties: MessageProperties, label: DeadLetterLabel): Options.Publish {
  const headers: Record<string, unknown> = {};
  const original: unknown = properties.headers;
  if (typeof original === 'object' && original !== null) {
    for (const [name, value] of Object.entries(original)) {
      if (!BROKER_DEATH_HEADERS.test(name) && !RELAY_LABEL_HEADERS.has(name)) headers[name] = value;
    }
  }
  headers[DEAD_LETTER_REASON_HEADER] = label.reason;
  if (label.user !== undefined) headers[DEAD_LETTER_USER_HEADER] = label.user;
  headers[DEAD_LETTER_QUEUE_HEADER] = label.queue;
  headers[DEAD_LETTER_AT_HEADER] = label.at;
  return persistentCopyOptions(properties, headers);
}

/**
 * Persistent publish options that keep a message's own properties (its id, content type and
 * encoding, timestamp, correlation, reply-to, type, app id, priority) with `headers`; never
 * `expiration` (a copy would expire where it is kept) nor `userId` (RabbitMQ checks it against
 * the publishing user). For the relay's dead-letter copies and the operators' replays.
 */
export function persistentCopyOptions(properties: MessageProperties, headers: Record<string, unknown>): Options.Publish {
  const options: Options.Publish = { persistent: true, headers };
  if (typeof properties.messageId === 'string') options.messageId = properties.messageId;
  if (typeof properties.contentType === 'string') options.contentType = properties.contentType;
  if (typeof properties.contentEncoding === 'string') options.contentEncoding = properties.contentEncoding;
  if (typeof properties.timestamp === 'number') options.timestamp = properties.timestamp;
  if (typeof properties.correlationId === 'string') options.correlationId = properties.correlationId;
  if (typeof properties.replyTo === 'string') options.replyTo = properties.replyTo;
  if (typeof properties.type === 'string') options.type = properties.type;
  if (typeof properties.appId === 'string') options.appId = properties.appId;
  if (typeof properties.priority === 'number') options.priority = properties.priority;
  return options;
}
