/**
 * The client's position and the dedupe rule, kept in one place.
 *
 * Guarantees: within an epoch the position moves forward one seq at a time, except when the
 * relay's welcome or reset sets it; a seq is accepted only when it is exactly `lastSeq + 1` in
 * the current epoch, so the handler never gets a seq out of order, nor twice in an epoch unless
 * the relay's welcome moves the position back. Every change is handed to the store, latest first, one save at a time.
 */
import type { Position, PositionStore } from './position-store.js';

/** What to do with an incoming seq. */
export type SeqVerdict =
  /** `lastSeq + 1` of the current epoch: hand it to the consumers. */
  | 'accept'
  /** `<= lastSeq`: already processed; suppress it (and ack it). */
  | 'duplicate'
  /** `> lastSeq + 1`: something before it is missing; drop it, it comes again after a rewind. */
  | 'ahead'
  /** Received under an epoch the client has since left; drop it. */
  | 'stale';

/** The result of adopting a relay's `welcome`. */
export interface Adoption {
  readonly previous: Position | undefined;
  readonly position: Position;
  /** The epoch differs from the one the client held. */
  readonly epochChanged: boolean;
}

export class PositionTracker {
  #position: Position | undefined;
  readonly #attempts = new Map<number, number>();
  #pendingSave: Position | undefined;
  #saving: Promise<void> = Promise.resolve();
  #draining = false;

  constructor(
    private readonly store: PositionStore,
    private readonly onSaveError: (error: unknown) => void,
  ) {}

  get position(): Position | undefined {
    return this.#position;
  }

  /** Reads the stored position once, before the first connection. */
  async load(): Promise<void> {
    this.#position = (await this.store.load()) ?? undefined;
  }

  /** The position to send in `hello.resume`: none when it belongs to a user other than `user`. */
  resumeFor(user: string | undefined): Position | undefined {
    const position = this.#position;
    if (!position) return undefined;
    if (position.user !== undefined && user !== undefined && position.user !== user) return undefined;
    return position;
  }

  classify(epoch: string, seq: number): SeqVerdict {
    const position = this.#position;
    if (!position || position.epoch !== epoch) return 'stale';
    if (seq <= position.lastSeq) return 'duplicate';
    return seq === position.lastSeq + 1 ? 'accept' : 'ahead';
  }

  /**
   * Marks `seq` processed (or dead-lettered). Returns false, and changes nothing, unless `seq`
   * is the next one of `epoch`.
   */
  advance(epoch: string, seq: number): boolean {
    if (this.classify(epoch, seq) !== 'accept') return false;
    this.#set({ ...this.#position, epoch, lastSeq: seq });
    for (const key of this.#attempts.keys()) if (key <= seq) this.#attempts.delete(key);
    return true;
  }

  /**
   * Takes the position from a `welcome`: the relay says where this connection's delivery
   * continues, and the client adopts it (a lower `lastSeq` in the same epoch means the relay's
   * numbering rolled back; those seqs come again rather than being suppressed unseen).
   */
  adopt(user: string, epoch: string, lastSeq: number): Adoption {
    const previous = this.#position;
    const sameEpoch = previous?.epoch === epoch;
    if (!sameEpoch || lastSeq < previous.lastSeq) this.#attempts.clear();
    const position: Position = { epoch, lastSeq, user };
    this.#set(position);
    return { previous, position, epochChanged: previous !== undefined && !sameEpoch };
  }

  /** Takes the position from a `reset`: a new numbering, unconditionally. */
  reset(epoch: string, lastSeq: number): Position | undefined {
    const previous = this.#position;
    this.#attempts.clear();
    this.#set({ ...previous, epoch, lastSeq });
    return previous;
  }

  /** Counts a failed handling of `seq` in the current epoch; returns the failures so far (1-based). */
  recordFailure(seq: number): number {
    const attempts = (this.#attempts.get(seq) ?? 0) + 1;
    this.#attempts.set(seq, attempts);
    return attempts;
  }

  /** Failed handlings of `seq` so far in the current epoch. */
  failuresOf(seq: number): number {
    return this.#attempts.get(seq) ?? 0;
  }

  /** Resolves when every position handed to the store so far is saved (or failed). */
  flush(): Promise<void> {
    return this.#saving;
  }

  #set(position: Position): void {
    this.#position = position;
    this.#pendingSave = position;
    if (!this.#draining) {
      this.#draining = true;
      this.#saving = this.#drainSaves();
    }
  }

  // Runs synchronously up to the first await, so synchronous stores save before the ack is sent.
  async #drainSaves(): Promise<void> {
    try {
      while (this.#pendingSave) {
        const position = this.#pendingSave;
        this.#pendingSave = undefined;
        try {
          await this.store.save(position);
        } catch (error) {
          this.onSaveError(error);
        }
      }
    } finally {
      this.#draining = false;
    }
  }
}
