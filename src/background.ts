/**
 * Runs work that nobody awaits (a pump, a close started from a timer) without letting a rejection
 * escape: the process exits on an unhandled rejection (see main.ts), so every promise that is not
 * awaited goes through here and says what to do when it fails. The linter's
 * `no-floating-promises` rule (with `void` not accepted as handling) sends every such call here.
 */
export function background(work: Promise<unknown>, onError: (error: unknown) => void): void {
  work.then(undefined, onError);
}
