/**
 * One AMQP connection per operator command, named in the management UI, closed when the
 * command ends. Channel errors (a missing queue) reject the operation that caused them and
 * are never left unhandled.
 */
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { DEFAULTS } from '../config.js';
import { brokerHost, connectAny } from '../amqp/connect-any.js';
import { errorMessage } from '../errors.js';
import { failure } from './cli-error.js';

const CONNECT_TIMEOUT_MS = 10_000;

export class BrokerSession {
  private closing: Promise<void> | undefined;

  private constructor(readonly model: ChannelModel) {}

  /** Connects to the first of `urls` (a cluster's nodes) that answers. */
  static async open(urls: string | readonly string[], purpose: string): Promise<BrokerSession> {
    const list = typeof urls === 'string' ? [urls] : urls;
    let model: ChannelModel;
    try {
      ({ model } = await connectAny(list, {
        timeoutMs: CONNECT_TIMEOUT_MS,
        heartbeatS: DEFAULTS.rabbitmqHeartbeatS,
        clientProperties: { connection_name: `inbox-relay cli ${purpose}` },
      }));
    } catch (error) {
      throw failure(`cannot connect to RabbitMQ at ${list.map(brokerHost).join(', ')}: ${errorMessage(error)}`, error);
    }
    model.on('error', () => undefined);
    return new BrokerSession(model);
  }

  async channel(): Promise<Channel> {
    const channel = await this.model.createChannel();
    channel.on('error', () => undefined);
    return channel;
  }

  async confirmChannel(): Promise<ConfirmChannel> {
    const channel = await this.model.createConfirmChannel();
    channel.on('error', () => undefined);
    return channel;
  }

  /** The broker's version, from the connection handshake. */
  get serverVersion(): string | undefined {
    const properties = (this.model.connection as unknown as { serverProperties?: { version?: unknown } }).serverProperties;
    return typeof properties?.version === 'string' ? properties.version : undefined;
  }

  /** Closes the connection (and every channel on it: unacked messages return to their queues). Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.model.close().catch(() => undefined);
    return this.closing;
  }
}

/** Runs `action` with a session that is closed afterwards, whatever happens. */
export async function withBroker<T>(
  urls: string | readonly string[],
  purpose: string,
  action: (session: BrokerSession) => Promise<T>,
): Promise<T> {
  const session = await BrokerSession.open(urls, purpose);
  try {
    return await action(session);
  } finally {
    await session.close();
  }
}

/** True for the channel error RabbitMQ sends for a queue or exchange that does not exist. */
export function isNotFound(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === 404;
}

/** A queue's ready messages and consumers, or undefined when it does not exist. Uses a channel of its own. */
export async function checkQueue(
  session: BrokerSession,
  queue: string,
): Promise<{ messageCount: number; consumerCount: number } | undefined> {
  const channel = await session.channel();
  try {
    const reply = await channel.checkQueue(queue);
    return { messageCount: reply.messageCount, consumerCount: reply.consumerCount };
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw failure(`cannot check queue ${queue}: ${errorMessage(error)}`, error);
  } finally {
    await channel.close().catch(() => undefined);
  }
}
