/** Bounded, abortable waiting: every wait in the demo ends by itself. */
import { setTimeout as sleepFor } from 'node:timers/promises';

const POLL_MS = 25;

/** Resolves after `ms`; rejects with an AbortError when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return sleepFor(Math.max(0, ms), undefined, signal === undefined ? undefined : { signal });
}

/**
 * Resolves true once `condition()` holds, false when `timeoutMs` passed first. Rejects with an
 * AbortError when `signal` aborts.
 */
export async function until(condition: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (condition()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(POLL_MS, deadline - Date.now()), signal);
  }
}

/** Resolves with `work`'s value, or rejects with `Error(message)` when it takes longer than `timeoutMs`. */
export async function within<T>(work: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), timeoutMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
