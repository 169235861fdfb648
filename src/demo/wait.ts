/** Bounded, abortable waiting: every wait in the demo ends by itself. */
import { setTimeout as sleepFor } from 'node:timers/promises';

/** Resolves after `ms`; rejects with an AbortError when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return sleepFor(Math.max(0, ms), undefined, signal === undefined ? undefined : { signal });
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
