import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DeadLetterIntents } from '../../src/delivery/dead-letter-intents.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { capturingLogger, newMemory, storeWith } from '../helpers/delivery-fakes.js';

const USER = 'u1';

/** The memory store's dead-letter calls behind a switch: recorded, optionally held, failing while `failing`. */
class Intents {
  readonly writes: { epoch: string; seq: number }[] = [];
  readonly clears: { epoch: string; seqs: number[] }[] = [];
  failing = 0;
  gated = false;
  private waiting: (() => void)[] = [];
  readonly store: MemoryStore;

  constructor(readonly memory: MemoryStore) {
    this.store = storeWith(memory, {
      deadLetter: async (user: string, epoch: string, seq: number) => {
        this.writes.push({ epoch, seq });
        if (this.gated) await new Promise<void>((resolve) => this.waiting.push(resolve));
        if (this.failing > 0) {
          this.failing -= 1;
          throw new Error('store down');
        }
        return memory.deadLetter(user, epoch, seq);
      },
      deadLettered: async (user: string, epoch: string, seqs: readonly number[]) => {
        this.clears.push({ epoch, seqs: [...seqs] });
        return memory.deadLettered(user, epoch, seqs);
      },
    });
  }

  release(): void {
    this.gated = false;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

/** A memory store holding messages m1..m`count` numbered 1..count, and intents kept over it. */
async function harness(count = 5, memory = newMemory()) {
  const { epoch } = await memory.meta(USER);
  await memory.assign(
    USER,
    epoch,
    0,
    Array.from({ length: count }, (_, i) => ({ id: `m${i + 1}`, fragment: `"n":${i + 1}` })),
  );
  const fake = new Intents(memory);
  const { logger, lines } = capturingLogger();
  const h = {
    memory,
    fake,
    lines,
    epoch,
    stored: [] as number[],
    dropped: [] as number[],
    epochGone: 0,
    /** Whether the store held the intent when onStored was called, per call. */
    inStoreAtCallback: [] as boolean[],
    intents: undefined as unknown as DeadLetterIntents,
  };
  h.intents = new DeadLetterIntents({
    user: USER,
    store: fake.store,
    logger,
    epoch: () => h.epoch,
    onStored: (seq) => {
      h.stored.push(seq);
      const state = memory.saveState(USER) as { intents: Map<string, number> } | undefined;
      h.inStoreAtCallback.push(state?.intents.get(`m${seq}`) === seq);
    },
    onDropped: (seq) => h.dropped.push(seq),
    onEpochGone: () => {
      h.epochGone += 1;
    },
  });
  return h;
}

/** What the store answers for message `id` delivered again. */
async function redelivered(memory: MemoryStore, epoch: string, id: string) {
  return (await memory.assign(USER, epoch, 0, [{ id, fragment: '"n":0' }]))?.[0];
}

const flush = () => vi.advanceTimersByTimeAsync(0);

describe('DeadLetterIntents', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('writes an intent to the store, then calls onStored', async () => {
    const h = await harness();
    h.fake.gated = true;
    h.intents.add(2, 'client-nack');
    expect(h.intents.has(2)).toBe(true);
    expect(h.intents.isStored(2)).toBe(false);
    expect(h.intents.size).toBe(1);
    await flush();
    expect(h.fake.writes).toEqual([{ epoch: h.epoch, seq: 2 }]);
    expect(h.stored).toEqual([]);
    h.fake.release();
    await flush();
    expect(h.stored).toEqual([2]);
    expect(h.inStoreAtCallback).toEqual([true]);
    expect(h.intents.isStored(2)).toBe(true);
    expect(h.dropped).toEqual([]);
    // RabbitMQ delivering the message again learns of the intent from the store.
    expect(await redelivered(h.memory, h.epoch, 'm2')).toEqual({ seq: 2, deadLetter: true });
  });

  it('keeps the reason given, and says client-nack for an unknown seq', async () => {
    const h = await harness();
    h.intents.add(3, 'nack-limit');
    h.intents.add(3, 'client-nack');
    await flush();
    expect(h.intents.reason(3)).toBe('nack-limit');
    expect(h.intents.reason(4)).toBe('client-nack');
    expect(h.fake.writes).toHaveLength(1);
    expect(h.stored).toEqual([3]);
  });

  it('retries a failed write every second until the store takes it', async () => {
    const h = await harness();
    h.fake.failing = 2;
    h.intents.add(1, 'client-nack');
    await flush();
    expect(h.fake.writes).toHaveLength(1);
    expect(h.intents.isStored(1)).toBe(false);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.fake.writes).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.fake.writes).toHaveLength(2);
    expect(h.stored).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.fake.writes).toHaveLength(3);
    expect(h.stored).toEqual([1]);
    expect(h.intents.isStored(1)).toBe(true);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.fake.writes).toHaveLength(3);
    expect(h.lines.filter((line) => line.msg === 'could not record a dead-letter intent; retrying').map((line) => line.level)).toEqual([
      40, 40,
    ]);
  });

  it('forgets an intent the store no longer has history for, and calls onDropped', async () => {
    const memory = new MemoryStore({ maxCount: 1, maxAgeMs: 3_600_000 });
    const h = await harness(3, memory);
    await memory.ack(USER, h.epoch, 3);
    expect((await memory.meta(USER)).start).toBe(3);
    h.intents.add(1, 'client-nack');
    await flush();
    expect(h.dropped).toEqual([1]);
    expect(h.stored).toEqual([]);
    expect(h.intents.has(1)).toBe(false);
    expect(h.intents.size).toBe(0);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.fake.writes).toHaveLength(1);
  });

  it('calls onEpochGone when the store no longer has the numbering', async () => {
    const h = await harness();
    await h.memory.forget(USER);
    h.intents.add(2, 'client-nack');
    await flush();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.epochGone).toBe(1);
    expect(h.stored).toEqual([]);
    expect(h.dropped).toEqual([]);
    expect(h.fake.writes).toHaveLength(1);
  });

  it('known() records an intent the store reported, as stored, without writing it', async () => {
    const h = await harness();
    h.intents.known(4);
    expect(h.intents.has(4)).toBe(true);
    expect(h.intents.isStored(4)).toBe(true);
    expect(h.intents.reason(4)).toBe('client-nack');
    // An intent added here and still being written is marked stored, keeping its reason.
    h.fake.gated = true;
    h.intents.add(2, 'nack-limit');
    h.intents.known(2);
    expect(h.intents.isStored(2)).toBe(true);
    expect(h.intents.reason(2)).toBe('nack-limit');
    expect(h.intents.size).toBe(2);
    await flush();
    expect(h.fake.writes.map((write) => write.seq)).toEqual([2]);
  });

  it('done() forgets the intent here and clears it in the store', async () => {
    const h = await harness();
    h.intents.add(2, 'client-nack');
    h.intents.add(3, 'client-nack');
    await flush();
    expect(await redelivered(h.memory, h.epoch, 'm2')).toEqual({ seq: 2, deadLetter: true });
    h.intents.done(2);
    expect(h.intents.has(2)).toBe(false);
    expect(h.intents.size).toBe(1);
    await flush();
    expect(h.fake.clears).toEqual([{ epoch: h.epoch, seqs: [2] }]);
    expect(await redelivered(h.memory, h.epoch, 'm2')).toEqual({ seq: 2, deadLetter: false });
    expect(await redelivered(h.memory, h.epoch, 'm3')).toEqual({ seq: 3, deadLetter: true });
    // Unknown or already done: nothing is cleared again.
    h.intents.done(2);
    h.intents.done(9);
    await flush();
    expect(h.fake.clears).toHaveLength(1);
  });

  it('done() cancels the retry of a write that failed', async () => {
    const h = await harness();
    h.fake.failing = 1;
    h.intents.add(2, 'client-nack');
    await flush();
    h.intents.done(2);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.fake.writes).toHaveLength(1);
    expect(h.stored).toEqual([]);
  });

  it('done() during a write in flight: the write answering later calls nothing', async () => {
    const h = await harness();
    h.fake.gated = true;
    h.intents.add(2, 'client-nack');
    await flush();
    h.intents.done(2);
    h.fake.release();
    await flush();
    expect(h.stored).toEqual([]);
    expect(h.dropped).toEqual([]);
    expect(h.intents.size).toBe(0);
  });

  it('stop() stops retries and ignores writes that answer later; the store keeps what it has', async () => {
    const h = await harness();
    h.intents.add(1, 'client-nack');
    await flush();
    expect(h.stored).toEqual([1]);
    h.fake.failing = 1;
    h.intents.add(2, 'client-nack');
    await flush();
    h.fake.gated = true;
    h.intents.add(3, 'client-nack');
    await flush();
    h.intents.stop();
    h.fake.release();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.fake.writes.map((write) => write.seq)).toEqual([1, 2, 3]);
    expect(h.stored).toEqual([1]);
    expect(h.fake.clears).toEqual([]);
    expect(await redelivered(h.memory, h.epoch, 'm1')).toEqual({ seq: 1, deadLetter: true });
  });

  it('writes each intent in the numbering the stream is in when it is written', async () => {
    const h = await harness();
    h.fake.failing = 1;
    h.intents.add(2, 'client-nack');
    await flush();
    const old = h.epoch;
    h.epoch = 'e-next';
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.fake.writes).toEqual([
      { epoch: old, seq: 2 },
      { epoch: 'e-next', seq: 2 },
    ]);
    expect(h.epochGone).toBe(1);
  });
});
