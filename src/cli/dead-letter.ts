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
 * - the relay's own dead-letter headers (`x-inbox-relay-reason`, `-user`, `-queue`,
 *   `-dead-lettered-at`) are dropped for the same reason;
 * - `x-inbox-relay-replay` becomes the previous count + 1 and `x-inbox-relay-replay-seal` its
 *   seal with REPLAY_KEY (replay-seal.ts), so the relay gives it a new seq instead of treating it
 *   as the delivery it already numbered (see message-codec.ts).
 */
import type { MessageProperties, Options } from 'amqplib';
import { persistentCopyOptions } from '../amqp/dead-letter-copy.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER, replayCountOf, type ReplaySeal } from '../delivery/replay-seal.js';
import {
  DEAD_LETTER_AT_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_USER_HEADER,
  userIdOfQueue,
} from '../amqp/topology.js';
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
const RELAY_DEATH_HEADERS: ReadonlySet<string> = new Set([
  DEAD_LETTER_REASON_HEADER,
  DEAD_LETTER_USER_HEADER,
  DEAD_LETTER_QUEUE_HEADER,
  DEAD_LETTER_AT_HEADER,
]);

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
  return persistentCopyOptions(properties, headers);
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

/** The relay's headers on a dead letter it published itself (read only without `x-death`). */
function relayLabel(properties: Pick<MessageProperties, 'headers'>): { reason?: string; queue?: string; at?: string } {
  const headers = properties.headers ?? {};
  const reason: unknown = headers[DEAD_LETTER_REASON_HEADER];
  const queue: unknown = headers[DEAD_LETTER_QUEUE_HEADER];
  const at: unknown = headers[DEAD_LETTER_AT_HEADER];
  return {
    ...(typeof reason === 'string' ? { reason } : {}),
    ...(typeof queue === 'string' ? { queue } : {}),
    ...(typeof at === 'number' && Number.isFinite(at) && Math.abs(at) < 8.64e15 ? { at: new Date(at).toISOString() } : {}),
  };
}

/** Which dead letters `dlq list` shows: all, or those of one user, or with one reason (the relay's or RabbitMQ's). */
export interface DeadLetterFilter {
  user?: string;
  reason?: string;
}

export function matchesFilter(
  summary: Pick<DeadLetterSummary, 'user' | 'relayReason' | 'rabbitmqReason'>,
  filter: DeadLetterFilter,
): boolean {
  if (filter.user !== undefined && summary.user !== filter.user) return false;
  if (filter.reason !== undefined && summary.relayReason !== filter.reason && summary.rabbitmqReason !== filter.reason) return false;
  return true;
}

/** What `dlq list` shows of one dead letter. */
export interface DeadLetterSummary {
  /** Position in the queue at the time of listing, from 1. */
  position: number;
  messageId: string | null;
  user: string | null;
  /** `relayReason` if the relay made this dead letter, else `rabbitmqReason`. */
  reason: string | null;
  /**
   * The relay's reason (`x-inbox-relay-reason`: client-nack, nack-limit, invalid-message,
   * too-large, receipt-without-message-id, invalid-user-id, unroutable-inbox-full), on a dead letter the relay published
   * itself; read only from a message without `x-death`, since any producer can set the header.
   */
  relayReason: string | null;
  /**
   * RabbitMQ's reason for the last death (`x-death`): delivery_limit, expired, maxlen, or
   * rejected (someone rejected it: another consumer, or the relay when publishing its own copy
   * failed). Null on a dead letter the relay published itself.
   */
  rabbitmqReason: string | null;
  /** The queue it died in the last time (from `x-death`, or the relay's `x-inbox-relay-queue`). */
  queue: string | null;
  /** How often it died in that queue for that reason (1 for a copy the relay published). */
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
  const relay = last === undefined ? relayLabel(properties) : undefined;
  const rabbitmqReason = typeof last?.reason === 'string' ? last.reason : null;
  const relayReason = relay?.reason ?? null;
  const summary: DeadLetterSummary = {
    position,
    messageId: typeof properties.messageId === 'string' ? properties.messageId : null,
    user: deadLetterUser(properties) ?? null,
    reason: relayReason ?? rabbitmqReason,
    relayReason,
    rabbitmqReason,
    queue: typeof last?.queue === 'string' ? last.queue : (relay?.queue ?? null),
    deaths: typeof count === 'number' ? count : relayReason !== null ? 1 : 0,
    diedAt: timeOf(last?.time) ?? relay?.at ?? null,
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
