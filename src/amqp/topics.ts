/**
 * Topics: a user follows topic patterns through bindings from the topic exchange `inbox.topics`
 * to the user's inbox queue, so one publish to a topic is copied by RabbitMQ into every following
 * inbox, where the relay numbers and delivers it like any other message.
 *
 * Guarantees:
 * - a topic or pattern that breaks the rules below is refused before anything is bound or
 *   published (`RELAY_ERR_INVALID_TOPIC`, `RELAY_ERR_INVALID_TOPIC_PATTERN`);
 * - follow and unfollow are idempotent (RabbitMQ keeps one binding per exchange, queue and key);
 * - following an inbox that does not exist fails with `RELAY_ERR_INBOX_MISSING` and binds nothing.
 *
 * Rules (docs/PROTOCOL.md 2.7): a topic is words of [A-Za-z0-9_-] separated by dots, at most 255
 * bytes (AMQP's limit on a routing key). A pattern is the same, except that a word may also be `*`
 * (exactly one word) or `#` (zero or more words).
 */
import type { Channel } from 'amqplib';
import { ErrorCode, RelayError, errorMessage } from '../errors.js';
import { managementRequest } from './management-request.js';
import { TOPIC_EXCHANGE, inboxQueueName, type ChannelOpener } from './topology.js';

const WORD = /^[A-Za-z0-9_-]+$/;
/** AMQP's short string: a routing key is at most 255 bytes. */
const MAX_BYTES = 255;

function wordsOf(text: unknown): string[] | undefined {
  if (typeof text !== 'string' || text === '' || text.length > MAX_BYTES) return undefined;
  return text.split('.');
}

/** A topic messages are published to: `news.sports.x`. */
export function isValidTopic(topic: unknown): topic is string {
  return wordsOf(topic)?.every((word) => WORD.test(word)) ?? false;
}

/** A pattern a user follows: `news.sports.*`, `team.42.#`, `#`. */
export function isValidTopicPattern(pattern: unknown): pattern is string {
  return wordsOf(pattern)?.every((word) => word === '*' || word === '#' || WORD.test(word)) ?? false;
}

const TOPIC_RULE = 'words of [A-Za-z0-9_-] separated by dots, at most 255 characters';

export function checkTopic(topic: unknown): string {
  if (!isValidTopic(topic)) throw new RelayError(ErrorCode.invalidTopic, `invalid topic ${describe(topic)}: a topic is ${TOPIC_RULE}`);
  return topic;
}

export function checkTopicPattern(pattern: unknown): string {
  if (!isValidTopicPattern(pattern)) {
    throw new RelayError(
      ErrorCode.invalidTopicPattern,
      `invalid topic pattern ${describe(pattern)}: a pattern is ${TOPIC_RULE}, where a word may also be * (one word) or # (zero or more)`,
    );
  }
  return pattern;
}

/** The offending value, quoted and cut short for an error message. */
function describe(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value) : typeof value;
}

function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 404;
}

async function onChannel<T>(open: ChannelOpener, user: string, work: (channel: Channel, queue: string) => Promise<T>): Promise<T> {
  const queue = inboxQueueName(user);
  const channel = await open();
  try {
    return await work(channel, queue);
  } catch (error) {
    // The exchange was declared on this channel just before, so a 404 means the queue is missing.
    if (isNotFound(error)) {
      throw new RelayError(ErrorCode.inboxMissing, `inbox ${queue} does not exist: provision it first (${errorMessage(error)})`, {
        cause: error,
      });
    }
    throw error;
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/** Declares the topic exchange (idempotent; the shared topology declares it too). */
export async function declareTopicExchange(open: ChannelOpener): Promise<void> {
  const channel = await open();
  try {
    await channel.assertExchange(TOPIC_EXCHANGE, 'topic', { durable: true });
  } finally {
    await channel.close().catch(() => undefined);
  }
}

/** Binds the user's inbox to `inbox.topics` with the pattern. The inbox must exist. */
export async function followTopic(open: ChannelOpener, user: string, pattern: string): Promise<void> {
  checkTopicPattern(pattern);
  await onChannel(open, user, async (channel, queue) => {
    await channel.assertExchange(TOPIC_EXCHANGE, 'topic', { durable: true });
    await channel.bindQueue(queue, TOPIC_EXCHANGE, pattern);
  });
}

/** Removes the binding; nothing happens when the user did not follow the pattern. */
export async function unfollowTopic(open: ChannelOpener, user: string, pattern: string): Promise<void> {
  checkTopicPattern(pattern);
  await onChannel(open, user, async (channel, queue) => {
    await channel.assertExchange(TOPIC_EXCHANGE, 'topic', { durable: true });
    await channel.unbindQueue(queue, TOPIC_EXCHANGE, pattern);
  });
}

const TIMEOUT_MS = 5_000;

/**
 * The patterns a user follows, sorted. AMQP cannot list bindings, so this asks RabbitMQ's
 * management HTTP API (`managementUrl`, with credentials: http://user:pass@host:15672).
 */
export async function listFollowedPatterns(managementUrl: string | undefined, vhost: string, user: string): Promise<string[]> {
  const queue = inboxQueueName(user);
  if (managementUrl === undefined) {
    throw new RelayError(ErrorCode.managementApi, "listing a user's topics needs RabbitMQ's management API: set managementUrl");
  }
  const path = `/api/bindings/${encodeURIComponent(vhost)}/e/${encodeURIComponent(TOPIC_EXCHANGE)}/q/${encodeURIComponent(queue)}`;
  const { url, headers } = managementRequest(managementUrl, path);
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (error) {
    throw new RelayError(ErrorCode.managementApi, `management API unreachable: ${errorMessage(error)}`, { cause: error, retryable: true });
  }
  if (response.status === 404) {
    throw new RelayError(ErrorCode.inboxMissing, `inbox ${queue} (or exchange ${TOPIC_EXCHANGE}) does not exist`);
  }
  if (!response.ok) {
    throw new RelayError(ErrorCode.managementApi, `management API answered HTTP ${response.status}`, {
      retryable: response.status >= 500,
    });
  }
  const body: unknown = await response.json().catch(() => undefined);
  if (!Array.isArray(body)) throw new RelayError(ErrorCode.managementApi, 'management API answered something other than a list');
  const patterns = body.flatMap((binding: unknown) => {
    const key = (binding as { routing_key?: unknown } | null)?.routing_key;
    return typeof key === 'string' ? [key] : [];
  });
  return [...new Set(patterns)].sort();
}
