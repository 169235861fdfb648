/**
 * Coalesces cumulative acks for one connection.
 *
 * Guarantees: an ack for every processed seq is sent within `maxDelayMs`; it is sent at once
 * when the processed-but-unacked count reaches `maxBatch` or half the delivery window, so the
 * relay's window (at most `window` unacked messages) never fills with processed messages; acks
 * go out in increasing seq order and never repeat a seq already acked on this connection.
 */
import type { Clock, TimerHandle } from './clock.js';

export const DEFAULT_ACK_DELAY_MS = 50;
export const DEFAULT_ACK_BATCH = 100;

export interface AckCoalescerOptions {
  /** The window from `welcome`. */
  window: number;
  maxDelayMs: number;
  maxBatch: number;
  clock: Clock;
  /** Sends `ack {seq}`. */
  send: (seq: number) => void;
}

/** The count of processed messages that forces an ack: `maxBatch`, at most half the window, at least 1. */
export function ackThreshold(window: number, maxBatch: number): number {
  return Math.max(1, Math.min(maxBatch, Math.floor(window / 2)));
}

export class AckCoalescer {
  readonly #threshold: number;
  #lastSent = 0;
  #pending = 0;
  #count = 0;
  #timer: TimerHandle | undefined;
  #disposed = false;

  constructor(private readonly options: AckCoalescerOptions) {
    this.#threshold = ackThreshold(options.window, options.maxBatch);
  }

  /** The highest seq acked on this connection (0 before the first ack). */
  get lastSent(): number {
    return this.#lastSent;
  }

  /** Processed messages not acked yet. */
  get unacked(): number {
    return this.#count;
  }

  /** Records that `seq` (and every seq below it) is processed. */
  processed(seq: number): void {
    if (this.#disposed || seq <= this.#lastSent) return;
    if (seq > this.#pending) this.#pending = seq;
    this.#count += 1;
    if (this.#count >= this.#threshold) {
      this.flush();
    } else if (!this.#timer) {
      this.#timer = this.options.clock.setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, this.options.maxDelayMs);
    }
  }

  /** Sends the pending ack now, if there is one. */
  flush(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (this.#disposed || this.#pending <= this.#lastSent) return;
    this.#lastSent = this.#pending;
    this.#count = 0;
    this.options.send(this.#lastSent);
  }

  /** Stops the timer; later calls do nothing. Pending acks are dropped (the resume position covers them). */
  dispose(): void {
    this.#disposed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }
}
