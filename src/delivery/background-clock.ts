/**
 * The clock the delivery core reads time from and schedules its timers on: the client SDK's
 * `Clock` (so both sides share one seam), with timers that never keep the process alive. Tests
 * drive it with fake timers; the relay's own shutdown cancels what matters.
 */
import type { Clock, TimerHandle } from '../client/clock.js';

export type { Clock, TimerHandle };

/** The runtime's clock for background work: every timer is `unref()`ed. */
export const backgroundClock: Clock = {
  now: () => Date.now(),
  setTimeout(callback, delayMs) {
    const handle = globalThis.setTimeout(callback, delayMs);
    handle.unref();
    return { cancel: () => globalThis.clearTimeout(handle) };
  },
};
