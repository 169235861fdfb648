/**
 * The RabbitMQ topology of the contract, and the arguments of each queue (the README explains
 * every one). Declarations are idempotent; a queue that already exists with other arguments is
 * used as it is (checked passively) and reported, never deleted.
 */
import type { Channel, Options } from 'amqplib';
import type { QueueType, RelayConfig } from '../config.js';
import { ErrorCode, RelayError } from '../errors.js';
import { isValidUserId } from '../protocol/user-id.js';

/** Producers publish here with routing key = user id. */
export const INBOX_EXCHANGE = 'inbox';
/**
 * Producers publish here with routing key = a topic (`news.sports.x`); each user follows topic
 * patterns through bindings from this exchange to the user's inbox (topics.ts). No alternate
 * exchange: a topic nobody follows routes nowhere, by design.
 */
export const TOPIC_EXCHANGE = 'inbox.topics';
/**
 * The relay publishes here when a user goes online or offline (presence), routing key = user id,
 * body `{user, online, connections, at}`. Applications bind their own queues to it; with none
 * bound, the events route nowhere.
 */
export const PRESENCE_EXCHANGE = 'inbox.presence';
/**
 * The relay publishes delivery receipts here (src/delivery/delivery-receipt.ts) with routing key =
 * the user id; producers bind queues of their own to it. No alternate exchange: a receipt nobody
 * subscribed to routes nowhere, by design.
 */
export const RECEIPTS_EXCHANGE = 'inbox.receipts';
/** Catches messages for users whose queue does not exist yet. */
export const UNROUTED_EXCHANGE = 'inbox.unrouted';
export const UNROUTED_QUEUE = 'inbox.unrouted';
/** Dead letters of every inbox (fanout), collected in `inbox.dead`. */
export const DEAD_LETTER_EXCHANGE = 'inbox.dlx';
export const DEAD_LETTER_QUEUE = 'inbox.dead';
/**
 * On a dead letter the relay published itself (rather than rejected into the dead-letter
 * exchange, which records `x-death`): why (dead-letter-copy.ts lists the reasons), whose inbox it
 * was meant for, the queue it was taken from and when (ms since the epoch). Every dead letter the
 * relay makes carries them, unless publishing the copy failed (then it is rejected, and RabbitMQ
 * records `x-death` reason `rejected`).
 */
export const DEAD_LETTER_REASON_HEADER = 'x-inbox-relay-reason';
export const DEAD_LETTER_USER_HEADER = 'x-inbox-relay-user';
export const DEAD_LETTER_QUEUE_HEADER = 'x-inbox-relay-queue';
export const DEAD_LETTER_AT_HEADER = 'x-inbox-relay-dead-lettered-at';
/** Headers of the relay and its operators (prefix): the producer library refuses to set them. */
export const RESERVED_HEADER_PREFIX = 'x-inbox-relay-';

export interface QueueSettings {
  queueType: QueueType;
  queueMaxLength: number;
  queueDeliveryLimit: number;
  /** A new quorum inbox's replicas (`x-quorum-initial-group-size`); unset: RabbitMQ's default, every node. */
  queueReplicas?: number | undefined;
}

/** The queue settings of a configuration. */
export function queueSettingsOf(
  config: Pick<RelayConfig, 'queueType' | 'queueMaxLength' | 'queueDeliveryLimit' | 'queueReplicas'>,
): QueueSettings {
  const { queueType, queueMaxLength, queueDeliveryLimit, queueReplicas } = config;
  return { queueType, queueMaxLength, queueDeliveryLimit, queueReplicas };
}

export function inboxQueueName(userId: string): string {
  if (!isValidUserId(userId)) {
    throw new RelayError(ErrorCode.invalidUserId, 'user id must be 1-128 characters of [A-Za-z0-9._:@-]');
  }
  return `inbox.${userId}`;
}

/** The user id of an inbox queue name, or undefined when the name is not one. */
export function userIdOfQueue(queue: string): string | undefined {
  const user = queue.startsWith('inbox.') ? queue.slice('inbox.'.length) : '';
  return isValidUserId(user) && queue !== UNROUTED_QUEUE && queue !== DEAD_LETTER_QUEUE ? user : undefined;
}

/** Arguments of a user's inbox queue. */
export function inboxQueueArguments(settings: QueueSettings): Record<string, unknown> {
  const args: Record<string, unknown> = {
    'x-queue-type': settings.queueType,
    'x-single-active-consumer': true,
    'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
    'x-max-length': settings.queueMaxLength,
    'x-overflow': 'reject-publish',
  };
  if (settings.queueType === 'quorum') {
    args['x-delivery-limit'] = settings.queueDeliveryLimit;
    args['x-dead-letter-strategy'] = 'at-least-once';
    // Only when set: an inbox declared before with another value (or none) is used as it is
    // (declareQueue checks it passively); RabbitMQ cannot change a queue's group size by policy.
    if (settings.queueReplicas !== undefined) args['x-quorum-initial-group-size'] = settings.queueReplicas;
  }
  return args;
}

function queueOptions(settings: QueueSettings, args: Record<string, unknown>): Options.AssertQueue {
  return { durable: true, autoDelete: false, exclusive: false, arguments: args };
}

/** Opens a fresh channel for declarations: a failed declaration closes the channel it ran on. */
export type ChannelOpener = () => Promise<Channel>;

function isPreconditionFailed(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 406;
}

async function closeQuietly(channel: Channel): Promise<void> {
  await channel.close().catch(() => undefined);
}

/** Declares a queue; if it exists with other arguments, checks it passively and reports that. */
async function declareQueue(
  open: ChannelOpener,
  name: string,
  options: Options.AssertQueue,
  onMismatch: (queue: string, error: unknown) => void,
): Promise<void> {
  const channel = await open();
  try {
    await channel.assertQueue(name, options);
    await closeQuietly(channel);
    return;
  } catch (error) {
    if (!isPreconditionFailed(error)) throw error;
    onMismatch(name, error);
  }
  const check = await open();
  try {
    await check.checkQueue(name);
  } finally {
    await closeQuietly(check);
  }
}

export interface TopologyHooks {
  /** A queue exists with arguments other than the configured ones; it is used as it is. */
  onQueueMismatch?: (queue: string, error: unknown) => void;
}

/** Declares the shared topology: exchanges, the unrouted queue and the dead-letter queue. */
export async function declareSharedTopology(open: ChannelOpener, settings: QueueSettings, hooks: TopologyHooks = {}): Promise<void> {
  const onMismatch = hooks.onQueueMismatch ?? (() => undefined);
  const channel = await open();
  try {
    await channel.assertExchange(DEAD_LETTER_EXCHANGE, 'fanout', { durable: true });
    await channel.assertExchange(UNROUTED_EXCHANGE, 'fanout', { durable: true });
    await channel.assertExchange(INBOX_EXCHANGE, 'direct', {
      durable: true,
      arguments: { 'alternate-exchange': UNROUTED_EXCHANGE },
    });
    await channel.assertExchange(TOPIC_EXCHANGE, 'topic', { durable: true });
    await channel.assertExchange(PRESENCE_EXCHANGE, 'topic', { durable: true });
    await channel.assertExchange(RECEIPTS_EXCHANGE, 'topic', { durable: true });
  } catch (error) {
    throw new RelayError(
      ErrorCode.topology,
      `cannot declare exchanges ${INBOX_EXCHANGE}/${UNROUTED_EXCHANGE}/${DEAD_LETTER_EXCHANGE}/${TOPIC_EXCHANGE}/${PRESENCE_EXCHANGE}/${RECEIPTS_EXCHANGE} (an existing one with other arguments?): ${(error as Error).message}`,
      { cause: error },
    );
  } finally {
    await closeQuietly(channel);
  }
  const deadArgs: Record<string, unknown> = { 'x-queue-type': settings.queueType };
  await declareQueue(open, DEAD_LETTER_QUEUE, queueOptions(settings, deadArgs), onMismatch);
  const unroutedArgs: Record<string, unknown> = {
    'x-queue-type': settings.queueType,
    'x-single-active-consumer': true,
    'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE,
  };
  if (settings.queueType === 'quorum') unroutedArgs['x-dead-letter-strategy'] = 'at-least-once';
  if (settings.queueType === 'quorum') unroutedArgs['x-overflow'] = 'reject-publish';
  await declareQueue(open, UNROUTED_QUEUE, queueOptions(settings, unroutedArgs), onMismatch);
  const bind = await open();
  try {
    await bind.bindQueue(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, '');
    await bind.bindQueue(UNROUTED_QUEUE, UNROUTED_EXCHANGE, '');
  } finally {
    await closeQuietly(bind);
  }
}

/** Declares a user's inbox queue and binds it to `inbox` with the user id as key. */
export async function provisionInbox(
  open: ChannelOpener,
  userId: string,
  settings: QueueSettings,
  hooks: TopologyHooks = {},
): Promise<string> {
  const queue = inboxQueueName(userId);
  await declareQueue(open, queue, queueOptions(settings, inboxQueueArguments(settings)), hooks.onQueueMismatch ?? (() => undefined));
  const channel = await open();
  try {
    await channel.bindQueue(queue, INBOX_EXCHANGE, userId);
  } finally {
    await closeQuietly(channel);
  }
  return queue;
}
