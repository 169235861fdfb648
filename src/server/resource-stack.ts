/**
 * What a start-up sequence has opened so far, so that it can be closed again.
 *
 * Guarantees: resources close in the reverse order they were added; each closes at most once;
 * a failing close is reported to `onCloseError` and does not stop the ones after it; `close()`
 * is idempotent (one stored promise) and closes only what was added here. `start()` runs one
 * step and, when it throws, closes everything added before it and rethrows the step's error.
 */

/** One named step of a start-up: opens a resource and registers how to close it. */
export type StartStep = <T>(name: string, open: () => Promise<T> | T, close?: (resource: T) => Promise<void> | void) => Promise<T>;

/** Why a close step failed, with the name of the resource it was closing. */
export type CloseErrorHandler = (name: string, error: unknown) => void;

interface Entry {
  name: string;
  close: () => Promise<void> | void;
}

export class ResourceStack {
  private readonly entries: Entry[] = [];
  private closing: Promise<void> | undefined;

  constructor(private readonly onCloseError: CloseErrorHandler) {}

  /** Names of the resources open now, oldest first (diagnostics and tests). */
  get names(): readonly string[] {
    return this.entries.map((entry) => entry.name);
  }

  /** Registers a resource already open; it closes before everything added earlier. */
  add(name: string, close: () => Promise<void> | void): void {
    if (this.closing) throw new Error(`resource stack is closed; cannot add ${name}`);
    this.entries.push({ name, close });
  }

  /**
   * Runs one start-up step. On success, its result is registered with `close` (when given) and
   * returned; on failure, everything added so far is closed, then the step's error is rethrown.
   */
  async start<T>(name: string, open: () => Promise<T> | T, close?: (resource: T) => Promise<void> | void): Promise<T> {
    let resource: T;
    try {
      resource = await open();
    } catch (error) {
      await this.close();
      throw error;
    }
    if (close) this.add(name, () => close(resource));
    return resource;
  }

  /** Closes every resource, newest first. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      while (this.entries.length > 0) {
        const entry = this.entries.pop()!;
        try {
          await entry.close();
        } catch (error) {
          this.onCloseError(entry.name, error);
        }
      }
    })();
    return this.closing;
  }
}
