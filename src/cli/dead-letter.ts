/**
 * Reading dead letters and preparing their replay; no I/O.
 *
 * A replayed copy keeps the body, messageId and properties, except:
 * - the broker's dead-lettering headers (`x-death`, `x-first-death-*`, `x-last-death-*`) and
 *   `x-delivery-count` are dropped: RabbitMQ silently drops a message dead-lettered again from a
 *   queue its `x-death` already names unless a rejection is in the cycle, so a replayed copy
 *   must start a fresh history;
 * - `expiration` is dropped (a message that expired would expire again at once) and `userId`
 *   (RabbitMQ refuses a userId other than the publishing connection's user);
 * - the relay's own dead-letter headers (`x-inbox-relay-reason`, `x-inbox-relay-user`) are
 *   dropped for the same reason;
 * - `x-inbox-relay-replay` becomes the previous count + 1 and `x-inbox-relay-replay-seal` its
 *   seal with REPLAY_KEY (replay-seal.ts), so the relay gives it a new seq instead of treating it
 *   as the delivery it already numbered (see message-codec.ts).
 */
import type { MessageProperties, Options } from 'amqplib';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER, replayCountOf, type ReplaySeal } from '../delivery/replay-seal.js';
import { DEAD_LETTER_REASON_HEADER, DEAD_LETTER_USER_HEADER, userIdOfQueue } from '../amqp/topology.js';
import { isValidUserId } from '../protocol/user-id.js';

interface XDeathEntry {
  queue?: unknown;
  reason?: unknown;
  count?: unknown;
  exchange?: unknown;
  time?: unknown;
  'routing-keys'?: unknown;
}

const BROKER_HEADERS = /^x-(death|first-death-.*|last-death-.*|delivery-count)$/;
const RELAY_DEATH_HEADERS: ReadonlySet<string> = new Set([DEAD_LETTER_REASON_HEADER, DEAD_LETTER_USER_HEADER]);

function deaths(properties: Pick<MessageProperties, 'headers'>): XDeathEntry[] {
  const value: unknown = properties.headers?.['x-death'];
  return Array.isArray(value) ? (value.filter((entry) => typeof entry === 'object' && entry !== null) as XDeathEntry[]) : [];
}

/**
 * The user a dead letter belongs to: the inbox queue it died in (from `x-death`, newest first,
 * or `x-first-death-queue`), else the first valid user id among its `x-death` routing keys, else
 * the user the relay named when it dead-lettered the message itself (`x-inbox-relay-user`, read
 * only without `x-death`). Undefined when none names a user. The message's own routing key is not used: a message put
 * into the queue directly carries the queue's name there, which could pass for a user id.
 */
export function deadLetterUser(properties: Pick<MessageProperties, 'headers'>): string | undefined {
  const entries = deaths(properties);
  for (const entry of entries) {
    const user = typeof entry.queue === 'string' ? userIdOfQueue(entry.queue) : undefined;
    if (user) return user;
  }
  const first: unknown = properties.headers?.['x-first-death-queue'];
  const fromFirst = typeof first === 'string' ? userIdOfQueue(first) : undefined;
  if (fromFirst) return fromFirst;
  for (const entry of entries) {
    const keys = entry['routing-keys'];
    if (!Array.isArray(keys)) continue;
    const user = keys.find((key): key is string => isValidUserId(key));
    if (user) return user;
  }
  const named: unknown = properties.headers?.[DEAD_LETTER_USER_HEADER];
  return entries.length === 0 && typeof named === 'string' && isValidUserId(named) ? named : undefined;
}

/** The replay count a message carries (0 when never replayed). */
export function replayCount(properties: Pick<MessageProperties, 'headers'>): number {
  return replayCountOf(properties.headers?.[REPLAY_HEADER]);
}

/**
 * The properties of the replayed copy of `message` for `user` (see the module comment). The seal
 * covers the user, the messageId, the new count and the body, all as the copy carries them.
 */
export function replayProperties(
  message: { content: Buffer; properties: MessageProperties },
  user: string,
  seal: ReplaySeal,
): Options.Publish {
  const { properties } = message;
  const headers: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(properties.headers ?? {})) {
    if (!BROKER_HEADERS.test(key) && !RELAY_DEATH_HEADERS.has(key)) headers[key] = value;
  }
  const count = replayCount(properties) + 1;
  headers[REPLAY_HEADER] = count;
  if (typeof properties.messageId === 'string') {
    headers[REPLAY_SEAL_HEADER] = seal.seal({ user, messageId: properties.messageId, count, body: message.content });
  } else {
    delete headers[REPLAY_SEAL_HEADER];
  }
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

function timeOf(value: unknown): string | undefined {
  const seconds = typeof value === 'object' && value !== null ? (value as { value?: unknown }).value : value;
  return typeof seconds === 'number' && Number.isFinite(seconds) ? new Date(seconds * 1000).toISOString() : undefined;
}

function isJsonType(contentType: unknown): boolean {
  if (typeof contentType !== 'string' || contentType === '') return true;
  const type = contentType.split(';')[0]?.trim().toLowerCase() ?? '';
  return type === 'application/json' || type.endsWith('+json');
}

/** What `dlq list` shows of one dead letter. */
export interface DeadLetterSummary {
  /** Position in the queue at the time of listing, from 1. */
  position: number;
  messageId: string | null;
  user: string | null;
  /**
   * Why it died the last time: rejected (a client nack or the relay), delivery_limit, expired,
   * maxlen; or the relay's own reason (`x-inbox-relay-reason`, e.g. unroutable-inbox-full).
   */
  reason: string | null;
  /** The queue it died in the last time. */
  queue: string | null;
  /** How often it died in that queue for that reason. */
  deaths: number;
  /** When it died the last time (ISO 8601). */
  diedAt: string | null;
  firstDeathReason: string | null;
  replays: number;
  /** Deliveries from the dead-letter queue itself (quorum queues count them; listing counts as one). */
  deliveryCount: number | null;
  contentType: string | null;
  bytes: number;
  /** The producer's timestamp (ms). */
  timestamp: number | null;
  /** Only with --bodies: the JSON value, or base64 for other content types or invalid JSON. */
  body?: unknown;
  bodyEncoding?: 'json' | 'base64';
}

export function summarize(
  position: number,
  message: { content: Buffer; properties: MessageProperties },
  withBody: boolean,
): DeadLetterSummary {
  const { properties } = message;
  const last = deaths(properties)[0];
  const count = last?.count;
  const deliveryCount: unknown = properties.headers?.['x-delivery-count'];
  const firstReason: unknown = properties.headers?.['x-first-death-reason'];
  const relayReason: unknown = last === undefined ? properties.headers?.[DEAD_LETTER_REASON_HEADER] : undefined;
  const summary: DeadLetterSummary = {
    position,
    messageId: typeof properties.messageId === 'string' ? properties.messageId : null,
    user: deadLetterUser(properties) ?? null,
    reason: typeof last?.reason === 'string' ? last.reason : typeof relayReason === 'string' ? relayReason : null,
    queue: typeof last?.queue === 'string' ? last.queue : null,
    deaths: typeof count === 'number' ? count : 0,
    diedAt: timeOf(last?.time) ?? null,
    firstDeathReason: typeof firstReason === 'string' ? firstReason : null,
    replays: replayCount(properties),
    deliveryCount: typeof deliveryCount === 'number' ? deliveryCount : null,
    contentType: typeof properties.contentType === 'string' ? properties.contentType : null,
    bytes: message.content.length,
    timestamp: typeof properties.timestamp === 'number' ? properties.timestamp : null,
  };
  if (withBody) {
    summary.body = message.content.toString('base64');
    summary.bodyEncoding = 'base64';
    if (isJsonType(properties.contentType)) {
      try {
        summary.body = JSON.parse(message.content.toString('utf8'));
        summary.bodyEncoding = 'json';
      } catch {
        // Not valid JSON after all: shown as base64 like any other bytes.
      }
    }
  }
  return summary;
}
