/**
 * What was sent and what arrived, per user: the evidence the summary is computed from. A
 * message is sent once RabbitMQ confirmed it; it arrived once a client's handler processed it.
 * Order holds when each user's handler saw the producer's counter `n` strictly increase and,
 * within an epoch, seqs with no gap.
 */
import type { InboxMessage } from '../client/index.js';

/** The body the demo publishes: `n` counts a user's messages from 1 in publish order. */
export interface DemoBody {
  readonly n: number;
  readonly text: string;
}

function isDemoBody(data: unknown): data is DemoBody {
  return typeof data === 'object' && data !== null && typeof (data as { n?: unknown }).n === 'number';
}

/** One user's record. */
export class UserLedger {
  /** Confirmed messageIds, in publish order. */
  readonly sent: string[] = [];
  /** Publishes RabbitMQ did not confirm (not counted as sent). */
  failedPublishes = 0;
  /** Distinct messageIds a handler processed. */
  readonly delivered = new Set<string>();
  /** Messages a handler got again after processing them (allowed: at-least-once). */
  repeats = 0;
  /** Each order violation, described. */
  readonly disorder: string[] = [];
  private lastN = 0;
  private last: { epoch: string; seq: number } | undefined;

  constructor(
    readonly user: string,
    readonly name: string,
  ) {}

  /** Records a message a handler processed. */
  processed(message: InboxMessage): void {
    if (this.delivered.has(message.id)) {
      this.repeats += 1;
      return;
    }
    this.delivered.add(message.id);
    const n = isDemoBody(message.data) ? message.data.n : Number.NaN;
    if (!(n > this.lastN)) this.disorder.push(`n ${n} after n ${this.lastN}`);
    else this.lastN = n;
    const last = this.last;
    if (last && last.epoch === message.epoch && message.seq !== last.seq + 1)
      this.disorder.push(`seq ${message.seq} after seq ${last.seq}`);
    this.last = { epoch: message.epoch, seq: message.seq };
  }

  /** Sent messages no handler processed. */
  get lost(): number {
    return this.sent.filter((id) => !this.delivered.has(id)).length;
  }

  /** True when every sent message was processed. */
  get complete(): boolean {
    return this.delivered.size >= this.sent.length && this.lost === 0;
  }
}
