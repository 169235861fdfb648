/**
 * Turns a RabbitMQ message into the parts of a `msg` frame, once, when it first arrives: the
 * JSON body is validated here and then copied into frames as the producer wrote it, so the
 * relay never parses and re-serialises it per connection.
 */
import type { MessageProperties } from 'amqplib';

export const DEFAULT_CONTENT_TYPE = 'application/json';
/**
 * Set by `inbox-relay dlq replay` (a count). A replayed message keeps its messageId but is a new
 * delivery: its idempotency key includes the count, so it gets a new seq instead of the one it
 * had before it was dead-lettered.
 */
export const REPLAY_HEADER = 'x-inbox-relay-replay';
// A message id must not contain control characters (C0 and DEL): matching them is the point here.
// eslint-disable-next-line no-control-regex -- the control characters in this class are deliberate
const MESSAGE_ID = /^[^\u0000-\u001f\u007f]{1,255}$/;

export type DecodedMessage = { ok: true; id: string; key: string; ts: number; fragment: string } | { ok: false; reason: string };

function isJsonType(contentType: string): boolean {
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}

/** Producers send `timestamp` in ms; AMQP's own unit is seconds, so small values are scaled. */
function timestampMs(value: unknown, now: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) return now;
  return value < 100_000_000_000 ? value * 1000 : value;
}

export function decodeMessage(
  content: Buffer,
  properties: Pick<MessageProperties, 'messageId' | 'contentType' | 'timestamp' | 'headers'>,
  maxBytes: number,
  now = Date.now(),
): DecodedMessage {
  const id: unknown = properties.messageId;
  if (typeof id !== 'string' || !MESSAGE_ID.test(id)) {
    return { ok: false, reason: 'missing or invalid messageId (1-255 characters, no control characters)' };
  }
  if (content.length > maxBytes) return { ok: false, reason: `body of ${content.length} bytes exceeds MAX_MESSAGE_BYTES` };
  const contentType =
    typeof properties.contentType === 'string' && properties.contentType !== '' ? properties.contentType : DEFAULT_CONTENT_TYPE;
  let data: string;
  if (isJsonType(contentType)) {
    const text = content.toString('utf8');
    try {
      JSON.parse(text);
    } catch {
      return { ok: false, reason: `body is not valid JSON for content type ${contentType}` };
    }
    data = text.trim();
  } else {
    data = JSON.stringify(content.toString('base64'));
  }
  const ts = timestampMs(properties.timestamp, now);
  const replay: unknown = properties.headers?.[REPLAY_HEADER];
  const key = typeof replay === 'number' && Number.isInteger(replay) && replay > 0 ? `${id}#replay${replay}` : id;
  return {
    ok: true,
    id,
    key,
    ts,
    fragment: `"id":${JSON.stringify(id)},"ts":${ts},"contentType":${JSON.stringify(contentType)},"data":${data}`,
  };
}

/** The `msg` frame for one seq. */
export function msgFrame(seq: number, redelivered: boolean, fragment: string): string {
  return `{"type":"msg","seq":${seq},"redelivered":${redelivered},${fragment}}`;
}
