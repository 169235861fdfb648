/**
 * The same message received on two sides (a user's connection on the owning node and one on
 * another node): how much later the second side got it, message by message. Only the first
 * receipt per side counts, and only messages due in the recording window. Differences of
 * percentiles (p99 of one side minus p99 of the other) compare two distributions; this compares
 * each message with itself, so load that delays both sides alike cancels out.
 */
import hdr from 'hdr-histogram-js';
import type { Payload } from './payload.js';
import type { Receiver } from './tracker.js';

export interface PairedSummary {
  /** Messages received on both sides. */
  count: number;
  /** How much later the second side received them (ms); a message the second side got first counts as 0. */
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Messages the second side received before the first. */
  secondFirst: number;
}

/** Keys a message by user and number (numbers stay far below 2^26 in any phase). */
const key = (payload: Payload): number => payload.u * 2 ** 26 + payload.k;
const ms = (us: number): number => Math.round(us / 10) / 100;

export class PairedDelays {
  private readonly first = new Map<number, number>();
  private readonly second = new Map<number, number>();
  private fromUs = Number.POSITIVE_INFINITY;
  private toUs = Number.POSITIVE_INFINITY;

  constructor(private readonly phase: number) {}

  /** Messages due from `fromUs` to `toUs` (monotonic µs) are compared. */
  recordBetween(fromUs: number, toUs: number): void {
    this.fromUs = fromUs;
    this.toUs = toUs;
  }

  /** A receiver for one side: passes every receipt on to `next`, and keeps its time. */
  side(which: 'first' | 'second', next: Receiver): Receiver {
    const times = which === 'first' ? this.first : this.second;
    return {
      onPayload: (payload, receivedUs) => {
        next.onPayload(payload, receivedUs);
        if (payload.r !== this.phase || payload.t < this.fromUs || payload.t > this.toUs) return;
        const k = key(payload);
        if (!times.has(k)) times.set(k, receivedUs);
      },
    };
  }

  summary(): PairedSummary | undefined {
    const histogram = hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 120_000_000,
      numberOfSignificantValueDigits: 3,
      autoResize: true,
    });
    let secondFirst = 0;
    for (const [k, firstUs] of this.first) {
      const secondUs = this.second.get(k);
      if (secondUs === undefined) continue;
      if (secondUs < firstUs) secondFirst += 1;
      histogram.recordValue(Math.max(1, secondUs - firstUs));
    }
    if (histogram.totalCount === 0) return undefined;
    return {
      count: histogram.totalCount,
      p50Ms: ms(histogram.getValueAtPercentile(50)),
      p90Ms: ms(histogram.getValueAtPercentile(90)),
      p99Ms: ms(histogram.getValueAtPercentile(99)),
      maxMs: ms(histogram.maxValue),
      secondFirst,
    };
  }
}
