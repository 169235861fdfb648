/**
 * The clock the relay reads time from and schedules its timers on: the client SDK's `Clock` (one
 * seam on both sides), plus intervals for the server's sweeps. Injected so that the delivery
 * core, the sweeps, the heartbeat and the per-connection timers run on fake time in unit tests.
 */
import type { Clock, TimerHandle } from '../client/clock.js';

export type { Clock, TimerHandle };

/** Time source, one-shot timers and intervals. */
export interface BackgroundClock extends Clock {
  /** Runs `callback` every `intervalMs` until cancelled. */
  setInterval(callback: () => void, intervalMs: number): TimerHandle;
}

/**
 * The runtime's own clock. Every timer is `unref()`ed: the relay's timers are background work
 * (retries, lingers, sweeps, deadlines of connections that hold a socket anyway), so none of them
 * alone keeps the process alive once the listeners are closed.
 */
export const backgroundClock: BackgroundClock = {
  now: () => Date.now(),
  setTimeout(callback, delayMs) {
    const handle = globalThis.setTimeout(callback, delayMs);
    handle.unref();
    return { cancel: () => globalThis.clearTimeout(handle) };
  },
  setInterval(callback, intervalMs) {
    const handle = globalThis.setInterval(callback, intervalMs);
    handle.unref();
    return { cancel: () => globalThis.clearInterval(handle) };
  },
};
