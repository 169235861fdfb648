/**
 * The clock the relay's connection logic reads time from and schedules its timers on. Injected so
 * that the sweeps, the heartbeat and the per-connection timers can be unit-tested on fake time.
 */

/** A scheduled callback; `cancel()` is idempotent and safe after the callback ran. */
export interface TimerHandle {
  cancel(): void;
}

/** Time source and timers. */
export interface ServerClock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `callback` once after `delayMs`. */
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
  /** Runs `callback` every `intervalMs` until cancelled. */
  setInterval(callback: () => void, intervalMs: number): TimerHandle;
}

/**
 * The runtime's own clock. Every timer is `unref()`ed: the relay's timers are background work
 * (sweeps, deadlines of connections that hold a socket anyway), so none of them alone keeps the
 * process alive once the listeners are closed.
 */
export const systemClock: ServerClock = {
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
