import type { Guard } from './breakers.js';
import type { AssignInput, Assigned, HistoryEntry, SeqStore, StreamMeta } from '../store/store.js';

/** The state store behind a breaker: while it is open, every call fails at once (retryable). */
export class GuardedStore implements SeqStore {
  constructor(
    private readonly store: SeqStore,
    private readonly guard: Guard,
  ) {}

  meta(user: string): Promise<StreamMeta> {
    return this.guard.run(() => this.store.meta(user));
  }

  peek(user: string): Promise<StreamMeta | undefined> {
    return this.guard.run(() => this.store.peek(user));
  }

  assign(user: string, epoch: string, seen: number, inputs: readonly AssignInput[]): Promise<Assigned[] | null> {
    return this.guard.run(() => this.store.assign(user, epoch, seen, inputs));
  }

  ack(user: string, epoch: string, seq: number): Promise<boolean> {
    return this.guard.run(() => this.store.ack(user, epoch, seq));
  }

  range(user: string, epoch: string, from: number, to: number): Promise<HistoryEntry[] | null> {
    return this.guard.run(() => this.store.range(user, epoch, from, to));
  }

  discard(user: string, epoch: string): Promise<void> {
    return this.guard.run(() => this.store.discard(user, epoch));
  }

  deadLetter(user: string, epoch: string, seq: number): Promise<boolean | null> {
    return this.guard.run(() => this.store.deadLetter(user, epoch, seq));
  }

  deadLettered(user: string, epoch: string, seqs: readonly number[]): Promise<void> {
    return this.guard.run(() => this.store.deadLettered(user, epoch, seqs));
  }

  deadLetterRequests(user: string, epoch: string, seqs: readonly number[]): Promise<number[] | null> {
    return this.guard.run(() => this.store.deadLetterRequests(user, epoch, seqs));
  }

  forget(user: string): Promise<void> {
    return this.guard.run(() => this.store.forget(user));
  }

  /** Closes the store itself (not through the breaker). */
  close(): Promise<void> {
    return this.store.close();
  }
}
