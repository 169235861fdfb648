/**
 * RabbitMQ tells a connection it is blocked (resource alarm) only when that connection publishes,
 * so the relay publishes a message that goes nowhere every few seconds to learn about alarms
 * early. One probe in flight at a time; none while the publisher is already known to be blocked.
 * `stop()` cancels the timer (idempotent); a probe in flight then ends on its own.
 */
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { BackgroundClock, TimerHandle } from '../delivery/background-clock.js';

/** How often the relay checks, by publishing nothing, whether RabbitMQ blocks publishers. */
export const ALARM_PROBE_MS = 5_000;

export interface AlarmProbeOptions {
  /** Publishes the probe (Producer.touch). */
  touch: () => Promise<void>;
  /** Whether RabbitMQ blocks the publisher now (then probing adds nothing). */
  blocked: () => boolean;
  clock: BackgroundClock;
  logger: Logger;
}

export class AlarmProbe {
  private touching = false;
  private timer: TimerHandle | undefined;

  constructor(private readonly options: AlarmProbeOptions) {}

  /** Probes now, then every ALARM_PROBE_MS until `stop()`. */
  start(): void {
    this.timer ??= this.options.clock.setInterval(() => this.probe(), ALARM_PROBE_MS);
    this.probe();
  }

  stop(): void {
    this.timer?.cancel();
  }

  private probe(): void {
    if (this.touching || this.options.blocked()) return;
    this.touching = true;
    const touched = this.options.touch().finally(() => {
      this.touching = false;
    });
    background(touched, (error) => this.options.logger.debug({ err: errorMessage(error) }, 'publisher probe failed'));
  }
}
