/**
 * The clock the client reads time from and schedules timers on. Injected so that tests can drive
 * backoff, ack coalescing, liveness and token refresh with fake time.
 */

/** A scheduled callback; `cancel()` is idempotent and safe after the callback ran. */
export interface TimerHandle {
  cancel(): void;
}

/** Time source and one-shot timers. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `callback` once after `delayMs`. */
  setTimeout(callback: () => void, delayMs: number): TimerHandle;
}

/**
 * The runtime's own clock. Timers are not `unref()`ed: the client is foreground work, and every
 * timer it starts is cancelled by `close()`, so nothing keeps a process alive after that.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(callback, delayMs) {
    const handle = globalThis.setTimeout(callback, delayMs);
    return { cancel: () => globalThis.clearTimeout(handle) };
  },
};
