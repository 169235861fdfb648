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
export interface AckedMarkWriterOptions {
  /** Writes the mark; false when the store no longer has this numbering (the epoch is gone). */
  write(seq: number): Promise<boolean>;
  /** 0: write at once (still one write in flight). */
  intervalMs: number;
  /** The store answered that the epoch is gone: nothing more is written. */
  onEpochGone(): void;
  /** A write failed (it is tried again in a second). */
  onError(error: unknown): void;
}

const RETRY_MS = 1_000;

export class AckedMarkWriter {
  /** The highest mark to write. */
  private wanted = 0;
  /** The mark last written, or being written. */
  private written = 0;
  private busy = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: AckedMarkWriterOptions) {}

  /** The store holds `seq` already (read from it): no need to write up to there. */
  known(seq: number): void {
    this.written = Math.max(this.written, seq);
    this.wanted = Math.max(this.wanted, seq);
  }

  /** The mark moved to `seq`: it is written within the interval. */
  moved(seq: number): void {
    this.wanted = Math.max(this.wanted, seq);
    if (this.timer || this.busy || this.wanted <= this.written || this.stopped) return;
    if (this.options.intervalMs <= 0) return this.writeNow();
    this.timer = setTimeout(() => this.writeNow(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Writes what is pending now and waits (at most `timeoutMs`, three tries) until the store holds it. */
  async settle(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let attempts = 0;
    while (!this.stopped && (this.busy || this.wanted > this.written) && Date.now() < deadline) {
      if (!this.busy) {
        // Three tries at most: with the store down each one fails at once (and logs).
        if (attempts >= 3) break;
        attempts += 1;
        this.writeNow();
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    this.cancelTimer();
  }

  /** Nothing more is written (the stream closed or its epoch is gone). */
  stop(): void {
    this.stopped = true;
    this.cancelTimer();
  }

  private cancelTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private writeNow(): void {
    this.cancelTimer();
    if (this.busy || this.wanted <= this.written || this.stopped) return;
    const seq = this.wanted;
    this.busy = true;
    this.written = seq;
    this.options.write(seq).then(
      (ok) => {
        this.busy = false;
        if (!ok) {
          this.stopped = true;
          return this.options.onEpochGone();
        }
        this.moved(this.wanted);
      },
      (error: unknown) => {
        this.busy = false;
        if (this.written === seq) this.written = seq - 1;
        if (this.stopped) return;
        this.options.onError(error);
        setTimeout(() => this.writeNow(), RETRY_MS).unref();
      },
    );
  }
}
