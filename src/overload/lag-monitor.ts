/**
 * Event-loop lag, measured by how late a 100 ms timer fires; `lagMs` is the worst lag seen in
 * the last `windowMs`, so a stall is visible right after it ends and for one window. The timer is
 * unref'ed and stopped by `close()`.
 */
export class LagMonitor {
  private readonly timer: NodeJS.Timeout;
  private readonly samples: number[];
  private index = 0;
  private expected: number;

  constructor(
    private readonly intervalMs = 100,
    windowMs = 1_000,
  ) {
    this.samples = new Array<number>(Math.max(1, Math.round(windowMs / intervalMs))).fill(0);
    this.expected = Date.now() + intervalMs;
    this.timer = setInterval(() => {
      const now = Date.now();
      this.samples[this.index] = Math.max(0, now - this.expected);
      this.index = (this.index + 1) % this.samples.length;
      this.expected = now + this.intervalMs;
    }, intervalMs);
    this.timer.unref();
  }

  /** The worst event-loop lag of the last window, in ms. */
  get lagMs(): number {
    return Math.max(...this.samples);
  }

  close(): void {
    clearInterval(this.timer);
  }
}
