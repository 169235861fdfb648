/**
 * Polling until a condition holds, always with a deadline, so every wait ends by itself. The one
 * poll loop of the demo, the benchmark and the tests.
 */

/** How long and how often {@link waitUntil} polls, and what ends it early. */
export interface WaitUntilOptions {
  /** The wait ends (false, or the `what` error) once this long has passed without the condition. */
  readonly timeoutMs: number;
  /** Time between two checks; default 25 ms. */
  readonly intervalMs?: number;
  /** Aborting rejects the wait with an AbortError. */
  readonly signal?: AbortSignal;
  /** Checked after every failed check: the wait ends at once (false) when it holds. */
  readonly giveUp?: () => boolean;
  /**
   * What is awaited, for the error message: when set, a wait that ends without the condition
   * rejects with `timed out after <timeoutMs> ms waiting for <what>` instead of resolving false.
   * A function is called only then, so it can describe the state at the time of the failure.
   */
  readonly what?: string | (() => string);
}

const DEFAULT_INTERVAL_MS = 25;

function abortError(signal: AbortSignal): Error {
  return new DOMException(signal.reason instanceof Error ? signal.reason.message : 'The operation was aborted', 'AbortError');
}

/** Resolves after `ms`; rejects with an AbortError when `signal` aborts first. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (signal?.aborted) return Promise.reject(abortError(signal));
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * Checks `condition` at once and then every `intervalMs` until it holds. Resolves true as soon as
 * it does; resolves false (or rejects, when `what` is set) once `timeoutMs` passed or `giveUp()`
 * holds first. The condition is always checked at least once, and never after the deadline.
 */
export async function waitUntil(condition: () => boolean | Promise<boolean>, options: WaitUntilOptions): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  for (;;) {
    if (await condition()) return true;
    const left = deadline - Date.now();
    if (left <= 0 || options.giveUp?.() === true) break;
    await pause(Math.min(intervalMs, left), options.signal);
  }
  if (options.what === undefined) return false;
  const what = typeof options.what === 'string' ? options.what : options.what();
  throw new Error(`timed out after ${options.timeoutMs} ms waiting for ${what}`);
}
