/**
 * Receipt accounting for one phase: counts, losses, duplicates, order and (optionally) the
 * latency from the due publish time to receipt in an HDR histogram.
 */
import hdr from 'hdr-histogram-js';
import type { Payload } from './payload.js';

/** Counts every first receipt of every phase, shared with the publisher thread. */
export const receivedCounter = new Int32Array(new SharedArrayBuffer(4));

export interface Receiver {
  /** Called by a client for every message it received, with the receipt time (monotonic µs). */
  onPayload(payload: Payload, receivedUs: number): void;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  meanMs: number;
}

export interface Accounting {
  published: number;
  nacked: number;
  expected: number;
  received: number;
  lost: number;
  duplicates: number;
  outOfOrder: number;
}

const ms = (us: number): number => Math.round(us / 10) / 100;

export class Tracker implements Receiver {
  received = 0;
  duplicates = 0;
  outOfOrder = 0;
  stale = 0;
  private readonly seen: Uint8Array[];
  private readonly highest: Int32Array;
  private readonly histogram: ReturnType<typeof hdr.build> | undefined;
  /** Only messages due in [fromUs, toUs] are recorded in the histogram. */
  private fromUs = Number.POSITIVE_INFINITY;
  private toUs = Number.POSITIVE_INFINITY;

  constructor(
    readonly phase: number,
    users: number,
    options: { latency?: boolean } = {},
  ) {
    this.seen = Array.from({ length: users }, () => new Uint8Array(64));
    this.highest = new Int32Array(users);
    if (options.latency) {
      this.histogram = hdr.build({
        lowestDiscernibleValue: 1,
        highestTrackableValue: 120_000_000,
        numberOfSignificantValueDigits: 3,
        autoResize: true,
      });
    }
  }

  /** Latency is recorded for messages due from `fromUs` to `toUs` (monotonic µs). */
  recordLatencyBetween(fromUs: number, toUs: number): void {
    this.fromUs = fromUs;
    this.toUs = toUs;
  }

  onPayload(payload: Payload, receivedUs: number): void {
    if (payload.r !== this.phase) {
      this.stale += 1;
      return;
    }
    const { u, k } = payload;
    let bits = this.seen[u];
    if (bits === undefined) return;
    if (k >= bits.length * 8) {
      const grown = new Uint8Array(Math.max(bits.length * 2, (k >> 3) + 64));
      grown.set(bits);
      this.seen[u] = grown;
      bits = grown;
    }
    const mask = 1 << (k & 7);
    if ((bits[k >> 3]! & mask) !== 0) {
      this.duplicates += 1;
      return;
    }
    bits[k >> 3]! |= mask;
    this.received += 1;
    Atomics.add(receivedCounter, 0, 1);
    if (k < this.highest[u]!) this.outOfOrder += 1;
    else this.highest[u] = k;
    if (this.histogram && payload.t >= this.fromUs && payload.t <= this.toUs) {
      this.histogram.recordValue(Math.max(1, receivedUs - payload.t));
    }
  }

  has(user: number, k: number): boolean {
    const bits = this.seen[user];
    return bits !== undefined && k < bits.length * 8 && (bits[k >> 3]! & (1 << (k & 7))) !== 0;
  }

  /** Compares receipts with what the broker confirmed: `published[u]` messages per user, minus the nacked ones. */
  account(published: readonly number[], nacked: readonly [number, number][]): Accounting {
    const refused = new Set(nacked.map(([u, k]) => `${u}:${k}`));
    let total = 0;
    let lost = 0;
    published.forEach((count, u) => {
      total += count;
      for (let k = 1; k <= count; k += 1) {
        if (!this.has(u, k) && !refused.has(`${u}:${k}`)) lost += 1;
      }
    });
    return {
      published: total,
      nacked: nacked.length,
      expected: total - nacked.length,
      received: this.received,
      lost,
      duplicates: this.duplicates,
      outOfOrder: this.outOfOrder,
    };
  }

  /** Messages 1..count of one user, not refused by the broker, that never arrived. */
  missing(user: number, count: number, nacked: readonly [number, number][]): number {
    const refused = new Set(nacked.filter(([u]) => u === user).map(([, k]) => k));
    let missing = 0;
    for (let k = 1; k <= count; k += 1) if (!this.has(user, k) && !refused.has(k)) missing += 1;
    return missing;
  }

  latency(): LatencySummary | undefined {
    const h = this.histogram;
    if (!h || h.totalCount === 0) return undefined;
    return {
      count: h.totalCount,
      p50Ms: ms(h.getValueAtPercentile(50)),
      p90Ms: ms(h.getValueAtPercentile(90)),
      p99Ms: ms(h.getValueAtPercentile(99)),
      p999Ms: ms(h.getValueAtPercentile(99.9)),
      maxMs: ms(h.maxValue),
      meanMs: ms(h.mean),
    };
  }
}
