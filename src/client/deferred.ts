/**
 * A promise settled from outside, and whether it has been: the client's `connect()` result, which
 * the first `welcome` resolves or the client's close rejects, whichever comes first.
 */

export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(error: unknown): void;
  /** True once `resolve` or `reject` was called (later calls change nothing). */
  settled: boolean;
}

/** Creates a pending {@link Deferred}. Its rejection is never reported as unhandled: the caller may not await it. */
export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // The caller may never await connect(); a rejection must not become an unhandled one.
  promise.catch(() => undefined);
  const result: Deferred<T> = {
    promise,
    settled: false,
    resolve: (value) => {
      result.settled = true;
      resolve(value);
    },
    reject: (error) => {
      result.settled = true;
      reject(error);
    },
  };
  return result;
}
