/**
 * Declares and deletes the bench's inbox queues exactly as the relay would (src/amqp/topology.ts:
 * same name, arguments and binding), over a few channels in parallel.
 */
import amqp from 'amqplib';
import type { Channel, ChannelModel } from 'amqplib';
import { INBOX_EXCHANGE, declareSharedTopology, inboxQueueArguments, inboxQueueName, type QueueSettings } from '../../src/amqp/topology.js';
import type { QueueType } from '../../src/config.js';
import { forEachLimit, withTimeout } from '../lib/time.js';

/** Ready messages an inbox queue holds before RabbitMQ refuses publishes to it (reject-publish). */
export const QUEUE_MAX_LENGTH = 10_000;

export function queueSettings(queueType: QueueType): QueueSettings {
  return { queueType, queueMaxLength: QUEUE_MAX_LENGTH, queueDeliveryLimit: 20 };
}

async function withChannels(
  url: string,
  count: number,
  work: (take: () => Promise<Channel>, give: (c: Channel) => void) => Promise<void>,
): Promise<void> {
  const model: ChannelModel = await withTimeout(
    amqp.connect(url, { clientProperties: { connection_name: 'bench topology' } }),
    30_000,
    'AMQP connect',
  );
  model.on('error', () => undefined);
  const idle: Channel[] = [];
  const take = async (): Promise<Channel> => {
    const reused = idle.pop();
    if (reused) return reused;
    const channel = await model.createChannel();
    channel.on('error', () => undefined);
    return channel;
  };
  const give = (channel: Channel): void => {
    if (idle.length < count) idle.push(channel);
    else void channel.close().catch(() => undefined);
  };
  try {
    await work(take, give);
  } finally {
    await withTimeout(model.close(), 15_000, 'AMQP close').catch(() => undefined);
  }
}

/** Ensures the shared topology (exchanges) exists, as the relay declares it. */
export async function ensureSharedTopology(url: string, queueType: QueueType): Promise<void> {
  await withChannels(url, 1, async (take) => {
    await declareSharedTopology(take, queueSettings(queueType), { onQueueMismatch: () => undefined });
  });
}

/** Declares `inbox.<user>` for every user, bound to `inbox`. Returns the failures (none expected). */
export async function declareInboxes(
  url: string,
  users: readonly string[],
  queueType: QueueType,
  deadlineMs: number,
): Promise<{ done: number; failed: number; errors: string[] }> {
  const args = inboxQueueArguments(queueSettings(queueType));
  let result = { done: 0, failed: 0, errors: [] as string[] };
  await withChannels(url, 16, async (take, give) => {
    result = await forEachLimit(
      users,
      16,
      async (user) => {
        const channel = await withTimeout(take(), 30_000, 'open channel');
        const queue = inboxQueueName(user);
        await withTimeout(
          channel.assertQueue(queue, { durable: true, autoDelete: false, exclusive: false, arguments: args }),
          60_000,
          `declare ${queue}`,
        );
        await withTimeout(channel.bindQueue(queue, INBOX_EXCHANGE, user), 60_000, `bind ${queue}`);
        give(channel);
      },
      deadlineMs,
    );
  });
  return result;
}

/** Users of inbox queues left by earlier bench runs (`inbox.bench-*`), from rabbitmqctl. */
export async function leftoverBenchUsers(): Promise<string[]> {
  const { execFile } = await import('node:child_process');
  const out = await new Promise<string>((resolve) => {
    execFile(
      'rabbitmqctl',
      ['list_queues', 'name', '--no-table-headers', '-q'],
      { timeout: 120_000, maxBuffer: 64 * 2 ** 20 },
      (error, stdout) => resolve(error ? '' : stdout),
    );
  });
  return out
    .split('\n')
    .map((line) => line.trim())
    .filter((name) => /^inbox\.bench-[a-z0-9]+-/.test(name))
    .map((name) => name.slice('inbox.'.length));
}

/** Ready messages and consumers of `inbox.<user>` per user, from the queues themselves (undefined where the check failed). */
export async function queueStates(
  url: string,
  users: readonly string[],
  deadlineMs: number,
): Promise<({ ready: number; consumers: number } | undefined)[]> {
  const states: ({ ready: number; consumers: number } | undefined)[] = users.map(() => undefined);
  await withChannels(url, 16, async (take, give) => {
    await forEachLimit(
      users,
      16,
      async (user, index) => {
        const channel = await withTimeout(take(), 30_000, 'open channel');
        const ok = await withTimeout(channel.checkQueue(inboxQueueName(user)), 30_000, `check ${inboxQueueName(user)}`);
        states[index] = { ready: ok.messageCount, consumers: ok.consumerCount };
        give(channel);
      },
      deadlineMs,
    );
  });
  return states;
}

/** Ready messages in `inbox.<user>` per user (undefined where the check failed). */
export async function queueDepths(url: string, users: readonly string[], deadlineMs: number): Promise<(number | undefined)[]> {
  return (await queueStates(url, users, deadlineMs)).map((state) => state?.ready);
}

/** Deletes `inbox.<user>` for every user (messages and all). */
export async function deleteInboxes(
  url: string,
  users: readonly string[],
  deadlineMs: number,
): Promise<{ done: number; failed: number; errors: string[] }> {
  let result = { done: 0, failed: 0, errors: [] as string[] };
  await withChannels(url, 16, async (take, give) => {
    result = await forEachLimit(
      users,
      16,
      async (user) => {
        const channel = await withTimeout(take(), 30_000, 'open channel');
        await withTimeout(channel.deleteQueue(inboxQueueName(user)), 60_000, `delete ${inboxQueueName(user)}`);
        give(channel);
      },
      deadlineMs,
    );
  });
  return result;
}
