import { randomBytes } from 'node:crypto';
import type { AssignInput, HistoryEntry, HistoryLimits, SeqStore, StreamMeta } from './store.js';

interface UserState extends StreamMeta {
  ids: Map<string, number>;
  history: Map<number, HistoryEntry>;
}

export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

/**
 * The state store in process memory: for a single node and for unit tests. Same guarantees as
 * the Redis store, except that a restart of the process loses every numbering (clients then
 * get `reset`).
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
    const state: UserState = { epoch: newEpoch(), seq: 0, acked: 0, start: 1, ids: new Map(), history: new Map() };
    this.users.set(user, state);
    return state;
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

  async meta(user: string): Promise<StreamMeta> {
    const state = this.state(user);
    return { epoch: state.epoch, seq: state.seq, acked: state.acked, start: state.start };
  }

  async peek(user: string): Promise<StreamMeta | undefined> {
    const state = this.users.get(user);
    return state && { epoch: state.epoch, seq: state.seq, acked: state.acked, start: state.start };
  }

  async assign(user: string, epoch: string, inputs: readonly AssignInput[]): Promise<number[] | null> {
    const state = this.users.get(user);
    if (!state || state.epoch !== epoch) return null;
    const storedAt = this.now();
    const seqs = inputs.map(({ id, fragment }) => {
      const known = state.ids.get(id);
      if (known !== undefined) return known;
      state.seq += 1;
      state.ids.set(id, state.seq);
      state.history.set(state.seq, { seq: state.seq, id, storedAt, fragment });
      return state.seq;
    });
    this.trim(state);
    return seqs;
  }

  async ack(user: string, epoch: string, seq: number): Promise<boolean> {
    const state = this.users.get(user);
    if (!state || state.epoch !== epoch) return false;
    state.acked = Math.max(state.acked, Math.min(seq, state.seq));
    this.trim(state);
    return true;
  }

  async range(user: string, epoch: string, from: number, to: number): Promise<HistoryEntry[] | null> {
    const state = this.users.get(user);
    if (!state || state.epoch !== epoch) return null;
    const entries: HistoryEntry[] = [];
    for (let seq = Math.max(from, state.start); seq <= Math.min(to, state.seq); seq += 1) {
      const entry = state.history.get(seq);
      if (entry) entries.push(entry);
    }
    return entries;
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
