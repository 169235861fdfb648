/** RabbitMQ's Web-STOMP plugin: one WebSocket per user, SUBSCRIBE /amq/queue/inbox.<user> with client-individual acks. */
import { inboxQueueName } from '../../src/amqp/topology.js';
import { StompClient } from '../clients/stomp-client.js';
import { WEB_STOMP_URL } from '../env/broker.js';
import { forEachLimit } from '../lib/time.js';
import type { ReceiverSlot, SystemUnderTest } from './system.js';

export class StompSystem implements SystemUnderTest {
  readonly name = 'web-stomp' as const;
  private clients: StompClient[] = [];

  constructor(
    private readonly window: number,
    private readonly slot: ReceiverSlot,
  ) {}

  pids(): Record<string, number | undefined> {
    return {};
  }

  health(): string | undefined {
    const lost = this.clients.filter((c) => c.lost).length;
    return lost === 0 ? undefined : `${lost} of ${this.clients.length} STOMP connections were closed by the broker`;
  }

  async start(users: readonly string[]): Promise<void> {
    const result = await forEachLimit(
      users,
      50,
      async (user) => {
        const client = await StompClient.open({
          url: WEB_STOMP_URL,
          login: 'guest',
          passcode: 'guest',
          destination: `/amq/queue/${inboxQueueName(user)}`,
          prefetch: this.window,
          receiver: this.slot.get,
        });
        this.clients.push(client);
      },
      Date.now() + 300_000,
    );
    if (result.done !== users.length) throw new Error(`Web-STOMP clients: ${result.failed} failed (${result.errors.join('; ')})`);
  }

  async stop(): Promise<void> {
    for (const client of this.clients) client.close();
    this.clients = [];
  }
}
