/**
 * Turns a RabbitMQ message into the parts of a `msg` frame, once, when it first arrives: the
 * JSON body is validated here and then copied into frames as the producer wrote it, so the
 * relay never parses and re-serialises it per connection.
 *
 * The idempotency key is the messageId, except for an operator's replay of a dead letter
 * (`x-inbox-relay-replay`, a count): its key includes the count, so it gets a new seq instead of
 * the one it had before it was dead-lettered. The relay takes a replay header only with a valid
 * seal (replay-seal.ts); without one the header is ignored and reported, and the message is
 * deduplicated by its messageId like any other.
 *
 * A message that asks for a delivery receipt (`inbox-receipt`, delivery-receipt.ts) must carry a
 * valid messageId, the name its receipt gives it: one without is invalid
 * (`receipt-without-message-id`), whatever else it holds.
 */
import type { MessageProperties } from 'amqplib';
import { asksForReceipt } from './delivery-receipt.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER, replayCountOf, type ReplayRefusal, type ReplaySeal } from './replay-seal.js';

export { REPLAY_HEADER, REPLAY_SEAL_HEADER } from './replay-seal.js';

export const DEFAULT_CONTENT_TYPE = 'application/json';
// A message id must not contain control characters (C0 and DEL): matching them is the point here.
// eslint-disable-next-line no-control-regex -- the control characters in this class are deliberate
const MESSAGE_ID = /^[^\u0000-\u001f\u007f]{1,255}$/;

/** Whether `id` is a messageId the relay takes (1-255 characters, no control characters). */
export function isValidMessageId(id: unknown): id is string {
  return typeof id === 'string' && MESSAGE_ID.test(id);
}

export type DecodedMessage =
  | {
      ok: true;
      id: string;
      /** The idempotency key: the messageId, or `<messageId>#replay<n>` for a sealed replay. */
      key: string;
      ts: number;
      fragment: string;
      /** Set when the message carried a replay header that was not honoured, and why. */
      replayRefused?: ReplayRefusal;
      /** The producer asked for a delivery receipt. */
      receipt: boolean;
    }
  | {
      ok: false;
      reason: string;
      /** The dead-letter reason (`x-inbox-relay-reason`). */
      code: InvalidMessageCode;
      /** The messageId of an invalid message that asked for a receipt and has a valid id: its receipt says `dead-lettered`. */
      receiptFor?: string;
    };

/** Why the relay refuses a message it reads: a body over the limit, a receipt asked without a messageId, anything else. */
export type InvalidMessageCode = 'invalid-message' | 'too-large' | 'receipt-without-message-id';

/** What checking a replay header needs: the user whose queue the message came from, and the keys. */
export interface ReplayContext {
  user: string;
  /** Undefined when REPLAY_KEY is not set: no replay header is honoured. */
  seal: ReplaySeal | undefined;
}

type Replay = { key: string; refused?: ReplayRefusal };

/** The idempotency key of a message, honouring its replay header only with a valid seal. */
function replayKey(id: string, content: Buffer, headers: Record<string, unknown> | undefined, replay: ReplayContext | undefined): Replay {
  const count = replayCountOf(headers?.[REPLAY_HEADER]);
  if (count === 0) return { key: id };
  if (replay?.seal === undefined) return { key: id, refused: 'no-key' };
  const seal: unknown = headers?.[REPLAY_SEAL_HEADER];
  if (seal === undefined) return { key: id, refused: 'no-seal' };
  if (!replay.seal.verify({ user: replay.user, messageId: id, count, body: content }, seal)) return { key: id, refused: 'bad-seal' };
  return { key: `${id}#replay${count}` };
}

function isJsonType(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}

/** Producers send `timestamp` in ms; AMQP's own unit is seconds, so small values are scaled. */
function timestampMs(value: unknown, now: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return now;
  return value < 100_000_000_000 ? value * 1000 : value;
}

/**
 * The message's own properties and, for a message that came through the topic exchange, the topic
 * it was published to (the delivery's routing key). The topic goes into the fragment, so it is
 * kept with the message in the store's history and is in every (re)delivery of it.
 */
export type MessageSource = Pick<MessageProperties, 'messageId' | 'contentType' | 'timestamp' | 'headers'> & {
  topic?: string | undefined;
};

export function decodeMessage(
  content: Buffer,
  properties: MessageSource,
  maxBytes: number,
  now = Date.now(),
  replay?: ReplayContext,
): DecodedMessage {
  const id: unknown = properties.messageId;
  const receipt = asksForReceipt(properties.headers);
  if (!isValidMessageId(id)) {
    const reason = 'missing or invalid messageId (1-255 characters, no control characters)';
    return receipt
      ? { ok: false, code: 'receipt-without-message-id', reason: `receipt asked; ${reason}` }
      : { ok: false, code: 'invalid-message', reason };
  }
  const receiptFor = receipt ? { receiptFor: id } : {};
  if (content.length > maxBytes) {
    return { ok: false, code: 'too-large', reason: `body of ${content.length} bytes exceeds MAX_MESSAGE_BYTES`, ...receiptFor };
  }
  const contentType =
    typeof properties.contentType === 'string' && properties.contentType !== '' ? properties.contentType : DEFAULT_CONTENT_TYPE;
  let data: string;
  if (isJsonType(contentType)) {
    const text = content.toString('utf8');
    try {
      JSON.parse(text);
    } catch {
      return { ok: false, code: 'invalid-message', reason: `body is not valid JSON for content type ${contentType}`, ...receiptFor };
    }
    data = text.trim();
  } else {
    data = JSON.stringify(content.toString('base64'));
  }
  const ts = timestampMs(properties.timestamp, now);
  const { key, refused } = replayKey(id, content, properties.headers, replay);
  const topic = properties.topic === undefined ? '' : `"topic":${JSON.stringify(properties.topic)},`;
  return {
    ok: true,
    id,
    key,
    ts,
    fragment: `"id":${JSON.stringify(id)},"ts":${ts},"contentType":${JSON.stringify(contentType)},${topic}"data":${data}`,
    ...(refused === undefined ? {} : { replayRefused: refused }),
    receipt,
  };
}

/** The `msg` frame for one seq. */
export function msgFrame(seq: number, redelivered: boolean, fragment: string): string {
  return `{"type":"msg","seq":${seq},"redelivered":${redelivered},${fragment}}`;
}
