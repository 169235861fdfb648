import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/**
 * Event-loop lag, sampled: the p99 delay of the last window (reset every `windowMs`).
 * Its timer is unref'ed and stopped by `close()`.
 */
export class LagMonitor {
  private readonly histogram: IntervalHistogram;
  private readonly timer: NodeJS.Timeout;
  private lastP99Ms = 0;

  constructor(windowMs = 1_000) {
    this.histogram = monitorEventLoopDelay({ resolution: 20 });
    this.histogram.enable();
    this.timer = setInterval(() => {
      this.lastP99Ms = this.histogram.percentile(99) / 1e6;
      this.histogram.reset();
    }, windowMs);
    this.timer.unref();
  }

  /** The p99 event-loop delay of the last window, in ms. */
  get lagMs(): number {
    return this.lastP99Ms;
  }

  close(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}
