/**
 * Where the client keeps its position: the epoch and the highest seq it has processed. The
 * position is what `hello.resume` sends after a reconnect or a page reload, so a durable store
 * turns "resume after a dropped connection" into "resume after a restart".
 */

/** A point in a user's stream: every seq up to `lastSeq` of `epoch` has been processed. */
export interface Position {
  readonly epoch: string;
  readonly lastSeq: number;
  /** The user the position belongs to (the welcome's `user`); a token for another user ignores it. */
  readonly user?: string;
}

/**
 * Loads and saves one position. `save` is called after every processed message, with positions
 * in increasing order within an epoch; the client never has two saves in flight, and a failed
 * save is reported as an `error` event without stopping delivery (at worst messages are seen
 * again after a restart).
 */
export interface PositionStore {
  load(): Position | undefined | Promise<Position | undefined>;
  save(position: Position): void | Promise<void>;
}

/** Keeps the position in memory: survives reconnects, not restarts. The default store. */
export class MemoryPositionStore implements PositionStore {
  #position: Position | undefined;

  constructor(initial?: Position) {
    this.#position = initial;
  }

  load(): Position | undefined {
    return this.#position;
  }

  save(position: Position): void {
    this.#position = position;
  }
}

/** True when `value` has the shape of a {@link Position} (for stores that parse persisted data). */
export function isPosition(value: unknown): value is Position {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Record<string, unknown>;
  return (
    typeof candidate.epoch === 'string' &&
    candidate.epoch.length > 0 &&
    typeof candidate.lastSeq === 'number' &&
    Number.isSafeInteger(candidate.lastSeq) &&
    candidate.lastSeq >= 0 &&
    (candidate.user === undefined || typeof candidate.user === 'string')
  );
}
