/**
 * What the fan-out's clients received of the one topic message: per client, how many `msg` frames
 * and when the first arrived, and whether each carried the expected `topic`. A figure is only
 * taken from a publish every client got exactly once with the right topic (`verdict`).
 */
import type { MsgFrame } from '../../src/protocol/frame-types.js';

export interface ReceiptTimes {
  /** Publish to the first client's receipt. */
  firstMs: number;
  /** Publish to the median client's receipt. */
  p50Ms: number;
  /** Publish to the last client's receipt. */
  lastMs: number;
}

export class FanoutReceipts {
  private readonly counts: number[];
  private readonly firstUs: number[];
  private wrongTopic = 0;
  private clientsWithOne = 0;
  private clientsWithSome = 0;

  constructor(
    readonly clients: number,
    private readonly topic: string,
  ) {
    this.counts = new Array<number>(clients).fill(0);
    this.firstUs = new Array<number>(clients).fill(0);
  }

  /** Records a `msg` frame client `index` received at `receivedUs` (monotonic µs). */
  record(index: number, frame: Pick<MsgFrame, 'topic'>, receivedUs: number): void {
    const count = (this.counts[index] ?? 0) + 1;
    this.counts[index] = count;
    if (frame.topic !== this.topic) this.wrongTopic += 1;
    if (count === 1) {
      this.firstUs[index] = receivedUs;
      this.clientsWithSome += 1;
      this.clientsWithOne += 1;
    } else if (count === 2) {
      this.clientsWithOne -= 1;
    }
  }

  /** Clients that received at least one message. */
  get reached(): number {
    return this.clientsWithSome;
  }

  /** Undefined when every client got exactly one message with the right topic; else what went wrong. */
  verdict(): string | undefined {
    const problems: string[] = [];
    const none = this.clients - this.clientsWithSome;
    const several = this.clientsWithSome - this.clientsWithOne;
    if (none > 0) problems.push(`${none} of ${this.clients} clients received nothing`);
    if (several > 0) problems.push(`${several} of ${this.clients} clients received more than one message`);
    if (this.wrongTopic > 0) problems.push(`${this.wrongTopic} messages without topic ${this.topic}`);
    return problems.length === 0 ? undefined : problems.join('; ');
  }

  /** Times from `publishedUs` to the clients' first receipts; only meaningful once `verdict()` is clean. */
  times(publishedUs: number): ReceiptTimes {
    const ms = this.firstUs
      .filter((_, i) => (this.counts[i] ?? 0) > 0)
      .map((us) => (us - publishedUs) / 1000)
      .sort((a, b) => a - b);
    // Nearest rank: the smallest time at least q of the clients had received by.
    const at = (q: number): number => ms[Math.max(0, Math.ceil(q * ms.length) - 1)] ?? Number.NaN;
    return { firstMs: ms[0] ?? Number.NaN, p50Ms: at(0.5), lastMs: ms.at(-1) ?? Number.NaN };
  }
}
