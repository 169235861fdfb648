import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AckedMarkWriter, type AckedMarkWriterOptions } from '../../src/delivery/acked-mark-writer.js';

/** A store write that answers when the test says so. */
function fakeStore() {
  const writes: number[] = [];
  const answers: ((ok: boolean | Error) => void)[] = [];
  const write = (seq: number) =>
    new Promise<boolean>((resolve, reject) => {
      writes.push(seq);
      answers.push((ok) => (ok instanceof Error ? reject(ok) : resolve(ok)));
    });
  const answer = async (ok: boolean | Error = true) => {
    answers.shift()?.(ok);
    await vi.advanceTimersByTimeAsync(0);
  };
  return { writes, write, answer, pending: () => answers.length };
}

/** A writer on `write` with no-op callbacks unless given. */
function writerOn(
  write: (seq: number) => Promise<boolean>,
  intervalMs: number,
  callbacks: Partial<Pick<AckedMarkWriterOptions, 'onEpochGone' | 'onError'>> = {},
) {
  return new AckedMarkWriter({ write, intervalMs, onEpochGone: callbacks.onEpochGone ?? vi.fn(), onError: callbacks.onError ?? vi.fn() });
}

describe('AckedMarkWriter', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('writes the marks of one interval as one write of the latest', async () => {
    const store = fakeStore();
    const writer = writerOn(store.write, 1_000);
    writer.moved(1);
    await vi.advanceTimersByTimeAsync(500);
    writer.moved(4);
    writer.moved(3);
    await vi.advanceTimersByTimeAsync(499);
    expect(store.writes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(store.writes).toEqual([4]);
  });

  it('keeps one write in flight and then writes the latest mark', async () => {
    const store = fakeStore();
    const writer = writerOn(store.write, 0);
    writer.moved(1);
    writer.moved(2);
    writer.moved(5);
    expect(store.writes).toEqual([1]);
    await store.answer();
    expect(store.writes).toEqual([1, 5]);
    await store.answer();
    expect(store.pending()).toBe(0);
  });

  it('does not write what the store is known to hold', async () => {
    const store = fakeStore();
    const writer = writerOn(store.write, 0);
    writer.known(7);
    writer.moved(6);
    writer.moved(7);
    expect(store.writes).toEqual([]);
    writer.moved(8);
    expect(store.writes).toEqual([8]);
  });

  it('tries a failed write again a second later, with the latest mark', async () => {
    const store = fakeStore();
    const onError = vi.fn();
    const writer = writerOn(store.write, 0, { onError });
    writer.moved(2);
    writer.moved(3);
    await store.answer(new Error('redis down'));
    expect(onError).toHaveBeenCalledTimes(1);
    expect(store.writes).toEqual([2]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(store.writes).toEqual([2, 3]);
  });

  it('stops writing when the store says the epoch is gone', async () => {
    const store = fakeStore();
    const onEpochGone = vi.fn();
    const writer = writerOn(store.write, 0, { onEpochGone });
    writer.moved(1);
    writer.moved(2);
    await store.answer(false);
    expect(onEpochGone).toHaveBeenCalledTimes(1);
    writer.moved(3);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(store.writes).toEqual([1]);
  });

  it('settle writes at once, without waiting for the interval, and returns once the store has it', async () => {
    const store = fakeStore();
    const writer = writerOn(store.write, 60_000);
    writer.moved(9);
    let settled = false;
    const settling = writer.settle().then(() => {
      settled = true;
    });
    await vi.advanceTimersByTimeAsync(0);
    expect(store.writes).toEqual([9]);
    expect(settled).toBe(false);
    await store.answer();
    await vi.advanceTimersByTimeAsync(10);
    await settling;
    expect(settled).toBe(true);
    // Stopped, nothing more is written.
    writer.stop();
    writer.moved(10);
    await vi.advanceTimersByTimeAsync(120_000);
    expect(store.writes).toEqual([9]);
  });

  it('settle gives up after three failed tries', async () => {
    const writes: number[] = [];
    const writer = writerOn(async (seq) => {
      writes.push(seq);
      throw new Error('redis down');
    }, 60_000);
    writer.moved(4);
    const settling = writer.settle();
    await vi.advanceTimersByTimeAsync(100);
    await settling;
    expect(writes).toEqual([4, 4, 4]);
  });
});
