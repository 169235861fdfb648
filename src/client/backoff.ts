/**
 * Reconnect delays: exponential backoff with full jitter. Pure: randomness is injected.
 *
 * Guarantees: without a retry-after hint the delay is uniform in [0, min(maxDelayMs,
 * initialDelayMs * 2^attempt)); with a hint it is at least the hint, plus the same jitter, so a
 * fleet told to wait does not come back in one burst.
 */

export const DEFAULT_INITIAL_DELAY_MS = 500;
export const DEFAULT_MAX_DELAY_MS = 30_000;

export interface BackoffOptions {
  /** Upper bound of the first delay. Default {@link DEFAULT_INITIAL_DELAY_MS}. */
  initialDelayMs: number;
  /** Cap of the jitter window, however many attempts failed. Default {@link DEFAULT_MAX_DELAY_MS}. */
  maxDelayMs: number;
}

/** A number in [0, 1), like `Math.random`. */
export type RandomSource = () => number;

/** The jitter window for the given attempt (0-based): `min(max, initial * 2^attempt)`. */
export function backoffCeilingMs(attempt: number, options: BackoffOptions): number {
  // 2^attempt overflows to Infinity eventually; min() caps it.
  return Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** Math.max(0, attempt));
}

/**
 * The delay before reconnect attempt `attempt` (0-based). `retryAfterMs` is the relay's 1013
 * hint: the result is never below it.
 */
export function backoffDelayMs(attempt: number, options: BackoffOptions, random: RandomSource, retryAfterMs?: number): number {
  const jitter = Math.floor(random() * backoffCeilingMs(attempt, options));
  return retryAfterMs === undefined ? jitter : Math.max(0, retryAfterMs) + jitter;
}

/** Counts consecutive failed attempts and hands out their delays. */
export class Backoff {
  #attempt = 0;

  constructor(
    private readonly options: BackoffOptions,
    private readonly random: RandomSource = Math.random,
  ) {}

  /** Consecutive attempts since the last {@link reset}. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The delay for the next attempt; counts the attempt. */
  next(retryAfterMs?: number): number {
    const delay = backoffDelayMs(this.#attempt, this.options, this.random, retryAfterMs);
    this.#attempt += 1;
    return delay;
  }

  /** Called once a connection got its welcome: the next failure starts from the first delay. */
  reset(): void {
    this.#attempt = 0;
  }
}
