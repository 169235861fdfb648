/**
 * Publishes the demo's messages in rounds: each round sends every user their next message, in
 * parallel across users and in order per user (each publish awaits RabbitMQ's confirm before
 * that user's next), so a user's queue holds their messages in the order `n` counts them.
 */
import type { Producer } from '../amqp/producer.js';
import { errorMessage } from '../errors.js';
import type { DemoBody, UserLedger } from './ledger.js';
import type { Narrator } from './narrator.js';
import { sleep } from './wait.js';

export class Publisher {
  private next = 1;

  constructor(
    private readonly producer: Producer,
    private readonly ledgers: readonly UserLedger[],
    private readonly narrator: Narrator,
    private readonly signal: AbortSignal,
  ) {}

  /** The `n` of the last round published. */
  get published(): number {
    return this.next - 1;
  }

  /** Publishes rounds up to `n` (inclusive), pausing `pauseMs` between rounds. */
  async publishUpTo(n: number, pauseMs: number): Promise<void> {
    if (n < this.next) return;
    const from = this.next;
    while (this.next <= n) {
      const round = this.next;
      await Promise.all(this.ledgers.map((ledger) => this.publishOne(ledger, round)));
      this.next += 1;
      if (this.next <= n) await sleep(pauseMs, this.signal);
    }
    const range = from === n ? `message ${n}` : `messages ${from}-${n}`;
    this.narrator.say(
      'producer',
      `published ${range} to each of ${this.ledgers.length} user${this.ledgers.length === 1 ? '' : 's'} (confirmed by RabbitMQ)`,
    );
  }

  private async publishOne(ledger: UserLedger, n: number): Promise<void> {
    const body: DemoBody = { n, text: `message ${n} for ${ledger.name}` };
    try {
      const { messageId } = await this.producer.publish(ledger.user, body);
      ledger.sent.push(messageId);
    } catch (error) {
      ledger.failedPublishes += 1;
      this.narrator.warn('producer', `message ${n} for ${ledger.name} not confirmed: ${errorMessage(error)}`);
    }
  }
}
