/**
 * The broker ceiling: plain amqplib consumers in the bench process, no WebSocket. Like the relay,
 * one channel per user's consumer (up to 500 per connection), prefetch `window`, one ack per message.
 */
import amqp from 'amqplib';
import type { Channel, ChannelModel } from 'amqplib';
import { inboxQueueName } from '../../src/amqp/topology.js';
import { isPayload } from '../load/payload.js';
import { forEachLimit, nowUs, withTimeout } from '../lib/time.js';
import type { ReceiverSlot, SystemUnderTest } from './system.js';

const CHANNELS_PER_CONNECTION = 500;

export class AmqpSystem implements SystemUnderTest {
  readonly name = 'amqplib' as const;
  private readonly models: ChannelModel[] = [];
  private readonly channels: Channel[] = [];

  constructor(
    private readonly url: string,
    private readonly window: number,
    private readonly slot: ReceiverSlot,
  ) {}

  pids(): Record<string, number | undefined> {
    return {};
  }

  async start(users: readonly string[]): Promise<void> {
    const needed = Math.ceil(users.length / CHANNELS_PER_CONNECTION);
    for (let i = 0; i < needed; i += 1) {
      const model = await amqp.connect(this.url, { clientProperties: { connection_name: `bench amqplib consumer ${i}` } });
      model.on('error', () => undefined);
      this.models.push(model);
    }
    const result = await forEachLimit(
      users,
      32,
      async (user, index) => {
        const model = this.models[Math.floor(index / CHANNELS_PER_CONNECTION)] as ChannelModel;
        const channel = await model.createChannel();
        channel.on('error', () => undefined);
        this.channels.push(channel);
        await channel.prefetch(this.window, false);
        await channel.consume(
          inboxQueueName(user),
          (message) => {
            if (message === null) return;
            const receivedUs = nowUs();
            const data: unknown = JSON.parse(message.content.toString());
            if (isPayload(data)) this.slot.current.onPayload(data, receivedUs);
            channel.ack(message);
          },
          { noAck: false },
        );
      },
      Date.now() + 300_000,
    );
    if (result.done !== users.length) throw new Error(`amqplib consumers: ${result.failed} failed (${result.errors.join('; ')})`);
  }

  async stop(): Promise<void> {
    // Bounded: a close whose close-ok never comes must not hold the run.
    await Promise.all(this.models.map((model) => withTimeout(model.close(), 15_000, 'amqplib close').catch(() => undefined)));
    this.models.length = 0;
    this.channels.length = 0;
  }
}
