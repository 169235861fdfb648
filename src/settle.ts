/**
 * Waits for `promise` to settle (fulfilled or rejected alike), for at most `ms`: true when it
 * settled in time, false when the time ran out first. The promise itself goes on. For shutdown
 * steps that a broker which stopped answering must not hold forever.
 */
export function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      resolve(true);
    };
    promise.then(done, done);
  });
}
