/**
 * Writes one user's acked mark to the state store for a user stream.
 *
 * Client acks move the mark often; the store does not need every step. At most one write is in
 * flight, a write waits up to `intervalMs` after the mark first moved (acks meanwhile become that
 * one write), and each write carries the latest mark. A write that fails is tried again a
 * second later (marks are cumulative, so the latest one covers the lost one). `settle` writes at
 * once and waits: a stream calls it before it releases its consumer, so that the next stream of
 * the user, which starts from the store's mark, does not start behind RabbitMQ.
 */
import { backgroundClock, type Clock, type TimerHandle } from './background-clock.js';

export interface AckedMarkWriterOptions {
  /** Writes the mark; false when the store no longer has this numbering (the epoch is gone). */
  write(seq: number): Promise<boolean>;
  /** 0: write at once (still one write in flight). */
  intervalMs: number;
  /** The store answered that the epoch is gone: nothing more is written. */
  onEpochGone(): void;
  /** A write failed (it is tried again in a second). */
  onError(error: unknown): void;
  /** The highest mark that may be written now (default: no limit); call `moved` when it rises. */
  ceiling?(): number;
  clock?: Clock;
}

const RETRY_MS = 1_000;
/** `settle` gives up after this many failed writes (with the store down each fails at once). */
const SETTLE_TRIES = 3;

export class AckedMarkWriter {
  /** The highest mark to write. */
  private wanted = 0;
  /** The mark last written, or being written. */
  private written = 0;
  /** The write in flight; it settles (never rejects) when the store answered. */
  private inFlight: Promise<boolean> | undefined;
  private timer: TimerHandle | undefined;
  private stopped = false;
  private readonly clock: Clock;

  constructor(private readonly options: AckedMarkWriterOptions) {
    this.clock = options.clock ?? backgroundClock;
  }

  /** The store holds `seq` already (read from it): no need to write up to there. */
  known(seq: number): void {
    this.written = Math.max(this.written, seq);
    this.wanted = Math.max(this.wanted, seq);
  }

  /** The mark to write now: the latest, unless the ceiling holds it lower. */
  private target(): number {
    return Math.min(this.wanted, this.options.ceiling?.() ?? Infinity);
  }

  /** The mark moved to `seq`: it is written within the interval. */
  moved(seq: number): void {
    this.wanted = Math.max(this.wanted, seq);
    if (this.timer || this.inFlight || this.target() <= this.written || this.stopped) return;
    if (this.options.intervalMs <= 0) {
      this.writeNow();
      return;
    }
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.writeNow();
    }, this.options.intervalMs);
  }

  /** Writes what is pending now and waits until the store holds it (three tries at most). */
  async settle(): Promise<void> {
    this.cancelTimer();
    let failures = 0;
    while (!this.stopped && failures < SETTLE_TRIES) {
      if (!this.inFlight) {
        if (this.target() <= this.written) break;
        this.writeNow();
      }
      const ok = await this.inFlight;
      if (ok === false) failures += 1;
    }
    this.cancelTimer();
  }

  /** Nothing more is written (the stream closed or its epoch is gone). */
  stop(): void {
    this.stopped = true;
    this.cancelTimer();
  }

  private cancelTimer(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  private writeNow(): void {
    this.cancelTimer();
    const seq = this.target();
    if (this.inFlight || seq <= this.written || this.stopped) return;
    this.written = seq;
    // Resolves true when the store took the mark, false when the write failed or was refused.
    this.inFlight = this.options.write(seq).then(
      (ok) => {
        this.inFlight = undefined;
        if (!ok) {
          this.stopped = true;
          this.options.onEpochGone();
          return false;
        }
        this.moved(this.wanted);
        return true;
      },
      (error: unknown) => {
        this.inFlight = undefined;
        if (this.written === seq) this.written = seq - 1;
        if (this.stopped) return false;
        this.options.onError(error);
        this.timer ??= this.clock.setTimeout(() => {
          this.timer = undefined;
          this.writeNow();
        }, RETRY_MS);
        return false;
      },
    );
  }
}
