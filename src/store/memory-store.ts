import { randomBytes } from 'node:crypto';
import type { AssignInput, Assigned, HistoryEntry, HistoryLimits, SeqStore, StreamMeta } from './store.js';

interface UserState extends StreamMeta {
  ids: Map<string, number>;
  history: Map<number, HistoryEntry>;
  /** Dead-letter intents: messageId -> seq (kept apart from `ids`, which trimming forgets). */
  intents: Map<string, number>;
}

export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

/**
 * The state store in process memory: for a single node and for unit tests. Same guarantees as
 * the Redis store, except that a restart of the process loses every numbering (clients then
 * get `reset`). It cannot go back in time by itself; a caller that claims otherwise (`seen`
 * above its seq, say) makes it drop the numbering exactly as the Redis store would.
 */
export class MemoryStore implements SeqStore {
  private readonly users = new Map<string, UserState>();

  constructor(
    private readonly limits: HistoryLimits,
    private readonly now: () => number = Date.now,
  ) {}

  private state(user: string): UserState {
    const existing = this.users.get(user);
    if (existing) return existing;
    const state: UserState = { epoch: newEpoch(), seq: 0, acked: 0, start: 1, ids: new Map(), history: new Map(), intents: new Map() };
    this.users.set(user, state);
    return state;
  }

  /** The user's state if `epoch` is its current one. */
  private current(user: string, epoch: string): UserState | undefined {
    const state = this.users.get(user);
    return state && state.epoch === epoch ? state : undefined;
  }

  private trim(state: UserState): void {
    const oldest = this.now() - this.limits.maxAgeMs;
    while (state.start <= state.acked) {
      const entry = state.history.get(state.start);
      const tooMany = state.seq - state.start + 1 > this.limits.maxCount;
      if (entry && !tooMany && entry.storedAt >= oldest) break;
      if (entry) state.ids.delete(entry.id);
      state.history.delete(state.start);
      state.start += 1;
    }
  }

  /** A copy of one user's state, for `restoreState` (simulations of a store that loses writes). */
  saveState(user: string): unknown {
    const state = this.users.get(user);
    return state && { ...state, ids: new Map(state.ids), history: new Map(state.history), intents: new Map(state.intents) };
  }

  /**
   * Puts back a state `saveState` returned, with every write since then gone: what a Redis that
   * restarts from an older append-only file, or a promoted lagging replica, does.
   */
  restoreState(user: string, saved: unknown): void {
    const state = saved as UserState | undefined;
    if (!state) this.users.delete(user);
    else this.users.set(user, { ...state, ids: new Map(state.ids), history: new Map(state.history), intents: new Map(state.intents) });
  }

  async meta(user: string): Promise<StreamMeta> {
    const state = this.state(user);
    return { epoch: state.epoch, seq: state.seq, acked: state.acked, start: state.start };
  }

  async peek(user: string): Promise<StreamMeta | undefined> {
    const state = this.users.get(user);
    return state && { epoch: state.epoch, seq: state.seq, acked: state.acked, start: state.start };
  }

  async assign(user: string, epoch: string, seen: number, inputs: readonly AssignInput[]): Promise<Assigned[] | null> {
    const state = this.current(user, epoch);
    if (!state) return null;
    if (state.seq < seen) {
      this.users.delete(user);
      return null;
    }
    const storedAt = this.now();
    const assigned = inputs.map(({ id, fragment }): Assigned => {
      const intent = state.intents.get(id);
      if (intent !== undefined) return { seq: intent, deadLetter: true };
      const known = state.ids.get(id);
      if (known !== undefined) return { seq: known, deadLetter: false };
      state.seq += 1;
      state.ids.set(id, state.seq);
      state.history.set(state.seq, { seq: state.seq, id, storedAt, fragment });
      return { seq: state.seq, deadLetter: false };
    });
    this.trim(state);
    return assigned;
  }

  async ack(user: string, epoch: string, seq: number): Promise<boolean> {
    const state = this.current(user, epoch);
    if (!state) return false;
    if (seq > state.seq) {
      this.users.delete(user);
      return false;
    }
    state.acked = Math.max(state.acked, seq);
    this.trim(state);
    return true;
  }

  async range(user: string, epoch: string, from: number, to: number): Promise<HistoryEntry[] | null> {
    const state = this.current(user, epoch);
    if (!state) return null;
    if (to > state.seq) {
      this.users.delete(user);
      return null;
    }
    const entries: HistoryEntry[] = [];
    for (let seq = Math.max(from, state.start); seq <= to; seq += 1) {
      const entry = state.history.get(seq);
      if (entry) entries.push(entry);
    }
    return entries;
  }

  async discard(user: string, epoch: string): Promise<void> {
    if (this.current(user, epoch)) this.users.delete(user);
  }

  async deadLetter(user: string, epoch: string, seq: number): Promise<boolean | null> {
    const state = this.current(user, epoch);
    if (!state) return null;
    if (seq > state.seq) {
      this.users.delete(user);
      return null;
    }
    const entry = seq >= state.start ? state.history.get(seq) : undefined;
    if (!entry) return false;
    state.intents.set(entry.id, seq);
    return true;
  }

  async deadLettered(user: string, epoch: string, seqs: readonly number[]): Promise<void> {
    const state = this.current(user, epoch);
    if (!state || state.intents.size === 0) return;
    const cleared = new Set(seqs);
    for (const [id, seq] of state.intents) if (cleared.has(seq)) state.intents.delete(id);
  }

  async deadLetterRequests(user: string, epoch: string, seqs: readonly number[]): Promise<number[] | null> {
    const state = this.current(user, epoch);
    if (!state) return null;
    const wanted = new Set(seqs);
    return [...state.intents.values()].filter((seq) => wanted.delete(seq));
  }

  async forget(user: string): Promise<void> {
    this.users.delete(user);
  }

  /** Loses every user's numbering, as a restarted single node would. */
  clear(): void {
    this.users.clear();
  }

  async close(): Promise<void> {}
}
