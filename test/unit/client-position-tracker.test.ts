import { afterEach, describe, expect, it, vi } from 'vitest';
import { LocalStoragePositionStore, type StorageLike } from '../../src/client/local-storage-position-store.js';
import { MemoryPositionStore, type Position, type PositionStore } from '../../src/client/position-store.js';
import { PositionTracker } from '../../src/client/position-tracker.js';

function tracker(store: PositionStore = new MemoryPositionStore()): { tracker: PositionTracker; errors: unknown[] } {
  const errors: unknown[] = [];
  return { tracker: new PositionTracker(store, (error) => errors.push(error)), errors };
}

class MapStorage implements StorageLike {
  readonly map = new Map<string, string>();
  getItem(key: string): string | null {
    return this.map.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value);
  }
}

describe('PositionTracker', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('accepts only lastSeq + 1 of the current epoch', () => {
    const { tracker: t } = tracker();
    t.adopt('u', 'e1', 4);
    expect(t.classify('e1', 5)).toBe('accept');
    expect(t.classify('e1', 4)).toBe('duplicate');
    expect(t.classify('e1', 1)).toBe('duplicate');
    expect(t.classify('e1', 6)).toBe('ahead');
    expect(t.classify('e0', 5)).toBe('stale');
  });

  it('advances one seq at a time and refuses anything else', () => {
    const { tracker: t } = tracker();
    t.adopt('u', 'e1', 0);
    expect(t.advance('e1', 2)).toBe(false);
    expect(t.advance('e1', 1)).toBe(true);
    expect(t.advance('e1', 1)).toBe(false);
    expect(t.advance('e2', 2)).toBe(false);
    expect(t.position).toEqual({ epoch: 'e1', lastSeq: 1, user: 'u' });
  });

  it('never accepts the same seq twice in an epoch, whatever order frames come in', () => {
    const { tracker: t } = tracker();
    t.adopt('u', 'e1', 0);
    const arrivals = [1, 2, 2, 1, 4, 3, 3, 5, 4, 6, 6, 2, 7];
    const handled: number[] = [];
    for (const seq of arrivals) {
      if (t.classify('e1', seq) === 'accept') {
        handled.push(seq);
        t.advance('e1', seq);
      }
    }
    // 4, 5, 6 and 7 arrive ahead of their turn and are dropped; only 3 and 4 fill the hole.
    expect(handled).toEqual([1, 2, 3, 4]);
  });

  it("adopts the welcome's position, also when it is below the client's in the same epoch", () => {
    const { tracker: t } = tracker(new MemoryPositionStore({ epoch: 'e1', lastSeq: 9 }));
    return t.load().then(() => {
      const same = t.adopt('u', 'e1', 7);
      expect(same.epochChanged).toBe(false);
      expect(t.position?.lastSeq).toBe(7);
      const other = t.adopt('u', 'e2', 0);
      expect(other.epochChanged).toBe(true);
      expect(other.previous).toEqual({ epoch: 'e1', lastSeq: 7, user: 'u' });
    });
  });

  it('forgets failure counts when the seq is passed or the epoch changes', () => {
    const { tracker: t } = tracker();
    t.adopt('u', 'e1', 0);
    expect(t.recordFailure(1)).toBe(1);
    expect(t.recordFailure(1)).toBe(2);
    t.advance('e1', 1);
    expect(t.failuresOf(1)).toBe(0);
    t.recordFailure(2);
    t.reset('e2', 0);
    expect(t.failuresOf(2)).toBe(0);
  });

  it('resumes only positions of the same user', () => {
    const { tracker: t } = tracker();
    t.adopt('alice', 'e1', 3);
    expect(t.resumeFor('alice')).toEqual({ epoch: 'e1', lastSeq: 3, user: 'alice' });
    expect(t.resumeFor(undefined)).toEqual({ epoch: 'e1', lastSeq: 3, user: 'alice' });
    expect(t.resumeFor('bob')).toBeUndefined();
  });

  it('saves every change in order to a synchronous store before returning', () => {
    const saved: Position[] = [];
    const { tracker: t } = tracker({ load: () => undefined, save: (p) => void saved.push(p) });
    t.adopt('u', 'e1', 0);
    t.advance('e1', 1);
    expect(saved.map((p) => p.lastSeq)).toEqual([0]);
    return t.flush().then(() => {
      expect(saved.map((p) => p.lastSeq)).toEqual([0, 1]);
    });
  });

  it('keeps one save in flight with a slow store and writes the latest position last', async () => {
    vi.useFakeTimers();
    const saved: number[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const store: PositionStore = {
      load: () => undefined,
      save: async (p) => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((resolve) => setTimeout(resolve, 5));
        saved.push(p.lastSeq);
        inFlight -= 1;
      },
    };
    const { tracker: t } = tracker(store);
    t.adopt('u', 'e1', 0);
    for (let seq = 1; seq <= 20; seq += 1) t.advance('e1', seq);
    const flushed = t.flush();
    await vi.runAllTimersAsync();
    await flushed;
    expect(maxInFlight).toBe(1);
    expect(saved.at(-1)).toBe(20);
    expect(saved).toEqual([...saved].sort((a, b) => a - b));
    expect(saved.length).toBeLessThan(21);
  });

  it('reports a failing save and keeps going', async () => {
    let fail = true;
    const { tracker: t, errors } = tracker({
      load: () => undefined,
      save: () => {
        if (fail) throw new Error('disk full');
      },
    });
    t.adopt('u', 'e1', 0);
    await t.flush();
    fail = false;
    t.advance('e1', 1);
    await t.flush();
    expect(errors).toHaveLength(1);
    expect(t.position?.lastSeq).toBe(1);
  });
});

describe('LocalStoragePositionStore', () => {
  it('round-trips a position under its key', () => {
    const storage = new MapStorage();
    const store = new LocalStoragePositionStore('k', storage);
    expect(store.load()).toBeUndefined();
    store.save({ epoch: 'e1', lastSeq: 12, user: 'u' });
    expect(JSON.parse(storage.map.get('k') ?? 'null')).toEqual({ epoch: 'e1', lastSeq: 12, user: 'u' });
    expect(new LocalStoragePositionStore('k', storage).load()).toEqual({ epoch: 'e1', lastSeq: 12, user: 'u' });
  });

  it.each([['not json'], ['{"epoch":"","lastSeq":1}'], ['{"epoch":"e","lastSeq":-1}'], ['{"epoch":"e","lastSeq":1.5}'], ['[]']])(
    'loads malformed entry %s as no position',
    (raw) => {
      const storage = new MapStorage();
      storage.setItem('k', raw);
      expect(new LocalStoragePositionStore('k', storage).load()).toBeUndefined();
    },
  );

  it('says so when the runtime has no localStorage', () => {
    expect(() => new LocalStoragePositionStore().save({ epoch: 'e', lastSeq: 1 })).toThrow(/localStorage/);
  });
});
