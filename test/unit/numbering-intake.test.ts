import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NumberingIntake, type Numbered } from '../../src/delivery/numbering-intake.js';
import { ErrorCode, RelayError } from '../../src/errors.js';
import type { Logger } from '../../src/log.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import type { AssignInput, Assigned } from '../../src/store/store.js';
import { capturingLogger, jsonDelivery, newMemory, storeWith } from '../helpers/delivery-fakes.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER, ReplaySeal } from '../../src/delivery/replay-seal.js';

type Reply = 'store' | 'fail' | 'short' | 'null' | Error;

/**
 * The memory store's numbering behind a switch: each call is recorded, may wait until `release`,
 * and then answers as `reply` says at that moment.
 */
class Numbering {
  readonly memory = newMemory();
  readonly calls: { epoch: string; seen: number; ids: string[] }[] = [];
  reply: Reply = 'store';
  gated = false;
  private waiting: (() => void)[] = [];
  readonly store: MemoryStore = storeWith(this.memory, {
    assign: async (user: string, epoch: string, seen: number, inputs: readonly AssignInput[]): Promise<Assigned[] | null> => {
      this.calls.push({ epoch, seen, ids: inputs.map((input) => input.id) });
      if (this.gated) await new Promise<void>((resolve) => this.waiting.push(resolve));
      const reply = this.reply;
      if (reply instanceof Error) throw reply;
      if (reply === 'fail') throw new Error('store down');
      if (reply === 'null') return null;
      const assigned = await this.memory.assign(user, epoch, seen, inputs);
      return reply === 'short' ? (assigned?.slice(1) ?? null) : assigned;
    },
  });

  /** Answers the calls waiting so far. */
  release(): void {
    this.gated = false;
    for (const resolve of this.waiting.splice(0)) resolve();
  }
}

interface Harness {
  intake: NumberingIntake;
  numbering: Numbering;
  batches: Numbered[][];
  invalid: { tag: number; reason: string }[];
  health: boolean[];
  epochGone: number;
  seen: number;
  lines: { level: number; msg: string }[];
  replayRefused: { tag: number; reason: string }[];
}

async function harness(options: { ready?: Promise<unknown>; logger?: Logger; replaySeal?: ReplaySeal } = {}): Promise<Harness> {
  const numbering = new Numbering();
  const { epoch } = await numbering.memory.meta('u1');
  const captured = capturingLogger();
  const h: Omit<Harness, 'intake'> = {
    numbering,
    batches: [],
    invalid: [],
    health: [],
    epochGone: 0,
    seen: 0,
    lines: captured.lines,
    replayRefused: [],
  };
  const intake = new NumberingIntake(
    {
      user: 'u1',
      store: numbering.store,
      maxMessageBytes: 1024,
      replaySeal: options.replaySeal,
      onReplayRefused: (delivery, reason) => h.replayRefused.push({ tag: delivery.tag, reason }),
      logger: options.logger ?? captured.logger,
      position: () => ({ epoch, seen: h.seen }),
      onNumbered: (batch) => {
        h.batches.push(batch);
        for (const { seq } of batch) h.seen = Math.max(h.seen, seq);
      },
      onInvalid: (delivery, reason) => h.invalid.push({ tag: delivery.tag, reason }),
      onEpochGone: () => {
        h.epochGone += 1;
      },
      onStoreHealth: (up) => h.health.push(up),
    },
    options.ready ?? Promise.resolve(),
  );
  return Object.assign(h, { intake });
}

const flush = () => vi.advanceTimersByTimeAsync(0);
const push = (h: Harness, ...ids: string[]) => {
  for (const id of ids) h.intake.push(jsonDelivery(Number(id.slice(1)), id));
};
/** Numbered deliveries as [tag, seq] pairs, in the order they were handed over. */
const numbered = (h: Harness): [number, number][] => h.batches.flat().map(({ delivery, seq }) => [delivery.tag, seq]);
const ids = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => `m${from + i}`);

describe('NumberingIntake', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('numbers the deliveries of one turn in one store call, in arrival order', async () => {
    const h = await harness();
    push(h, 'm5', 'm3', 'm9', 'm1');
    expect(h.numbering.calls).toHaveLength(0);
    await flush();
    expect(h.numbering.calls.map((call) => call.ids)).toEqual([['m5', 'm3', 'm9', 'm1']]);
    expect(h.batches).toHaveLength(1);
    expect(numbered(h)).toEqual([
      [5, 1],
      [3, 2],
      [9, 3],
      [1, 4],
    ]);
    expect(h.batches[0]!.map((entry) => entry.id)).toEqual(['m5', 'm3', 'm9', 'm1']);
    expect(h.batches[0]!.every((entry) => entry.deadLetter === false && entry.ts === 1_700_000_000_000)).toBe(true);
    expect(h.intake.pendingCount).toBe(0);
    expect(h.intake.busy).toBe(false);
  });

  it('numbers what arrives while a call is in flight in the next call, after it', async () => {
    const h = await harness();
    h.numbering.gated = true;
    push(h, 'm1', 'm2');
    await flush();
    expect(h.intake.busy).toBe(true);
    push(h, 'm3');
    await flush();
    push(h, 'm4');
    await flush();
    expect(h.numbering.calls).toHaveLength(1);
    expect(h.intake.pendingCount).toBe(2);
    h.numbering.release();
    await flush();
    expect(h.numbering.calls.map((call) => call.ids)).toEqual([
      ['m1', 'm2'],
      ['m3', 'm4'],
    ]);
    // The second call says it saw the seqs the first one handed out.
    expect(h.numbering.calls.map((call) => call.seen)).toEqual([0, 2]);
    expect(numbered(h).map(([, seq]) => seq)).toEqual([1, 2, 3, 4]);
    expect(h.batches.map((batch) => batch.length)).toEqual([2, 2]);
  });

  it('numbers a sealed replay as a new message, and a forged one as the message it copies (reported)', async () => {
    const seal = new ReplaySeal(['replay-0123456789-abcdefghijklmnopq']);
    const h = await harness({ replaySeal: seal });
    const original = jsonDelivery(1, 'm1');
    const sealed = (tag: number, count: number) =>
      jsonDelivery(tag, 'm1', {
        content: original.content,
        headers: {
          [REPLAY_HEADER]: count,
          [REPLAY_SEAL_HEADER]: seal.seal({ user: 'u1', messageId: 'm1', count, body: original.content }),
        },
      });
    h.intake.push(original);
    h.intake.push(jsonDelivery(2, 'm1', { content: original.content, headers: { [REPLAY_HEADER]: 1 } }));
    h.intake.push(sealed(3, 1));
    h.intake.push(jsonDelivery(4, 'm1', { content: original.content, headers: { [REPLAY_HEADER]: 2, [REPLAY_SEAL_HEADER]: 'x' } }));
    // A copy of a sealed replay is a copy of that replay.
    h.intake.push(sealed(5, 1));
    await flush();
    expect(h.numbering.calls.map((call) => call.ids)).toEqual([['m1', 'm1', 'm1#replay1', 'm1', 'm1#replay1']]);
    expect(numbered(h)).toEqual([
      [1, 1],
      [2, 1],
      [3, 2],
      [4, 1],
      [5, 2],
    ]);
    expect(h.replayRefused).toEqual([
      { tag: 2, reason: 'no-seal' },
      { tag: 4, reason: 'bad-seal' },
    ]);
  });

  it('honours no replay header without a key', async () => {
    const h = await harness();
    h.intake.push(jsonDelivery(1, 'm1'));
    h.intake.push(jsonDelivery(2, 'm1', { headers: { [REPLAY_HEADER]: 1, [REPLAY_SEAL_HEADER]: 'anything' } }));
    await flush();
    expect(numbered(h)).toEqual([
      [1, 1],
      [2, 1],
    ]);
    expect(h.replayRefused).toEqual([{ tag: 2, reason: 'no-key' }]);
  });

  it('sends at most 200 messages per store call', async () => {
    const h = await harness();
    push(h, ...ids(1, 450));
    await flush();
    expect(h.numbering.calls.map((call) => call.ids.length)).toEqual([200, 200, 50]);
    expect(h.numbering.calls.flatMap((call) => call.ids)).toEqual(ids(1, 450));
    expect(numbered(h).map(([tag, seq]) => tag - seq)).toEqual(Array.from({ length: 450 }, () => 0));
    expect(h.batches.map((batch) => batch.length)).toEqual([200, 200, 50]);
  });

  it('hands invalid messages to onInvalid and numbers only the valid ones, in order', async () => {
    const h = await harness();
    h.intake.push(jsonDelivery(1, 'm1'));
    h.intake.push(jsonDelivery(2, 'm2', { messageId: undefined }));
    h.intake.push(jsonDelivery(3, 'm3', { content: Buffer.from('{not json') }));
    h.intake.push(jsonDelivery(4, 'm4'));
    h.intake.push(jsonDelivery(5, 'm5', { content: Buffer.alloc(2048, 0x20) }));
    await flush();
    expect(h.invalid.map((entry) => entry.tag)).toEqual([2, 3, 5]);
    expect(h.invalid[0]!.reason).toMatch(/messageId/);
    expect(h.invalid[1]!.reason).toMatch(/not valid JSON/);
    expect(h.invalid[2]!.reason).toMatch(/exceeds MAX_MESSAGE_BYTES/);
    expect(h.numbering.calls.map((call) => call.ids)).toEqual([['m1', 'm4']]);
    expect(numbered(h)).toEqual([
      [1, 1],
      [4, 2],
    ]);
  });

  it('makes no store call for a batch of invalid messages only', async () => {
    const h = await harness();
    h.intake.push(jsonDelivery(1, 'm1', { messageId: 42 }));
    h.intake.push(jsonDelivery(2, 'm2', { messageId: '' }));
    await flush();
    expect(h.invalid.map((entry) => entry.tag)).toEqual([1, 2]);
    expect(h.numbering.calls).toHaveLength(0);
    expect(h.batches).toHaveLength(0);
    expect(h.health).toEqual([]);
  });

  it('keeps a batch the store failed, in order ahead of later deliveries, and tries again after 1 s', async () => {
    const h = await harness();
    h.numbering.reply = 'fail';
    h.numbering.gated = true;
    push(h, 'm1', 'm2');
    h.intake.push(jsonDelivery(3, 'm3', { messageId: undefined }));
    await flush();
    // m4 arrives while the failing call is in flight.
    push(h, 'm4');
    await flush();
    h.numbering.release();
    await flush();
    expect(h.numbering.calls).toHaveLength(1);
    expect(h.health).toEqual([false]);
    expect(h.intake.pendingCount).toBe(3);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.numbering.calls).toHaveLength(1);
    h.numbering.reply = 'store';
    await vi.advanceTimersByTimeAsync(1);
    expect(h.numbering.calls.map((call) => call.ids)).toEqual([
      ['m1', 'm2'],
      ['m1', 'm2', 'm4'],
    ]);
    expect(numbered(h)).toEqual([
      [1, 1],
      [2, 2],
      [4, 3],
    ]);
    // The invalid one was reported once, not again with the retry.
    expect(h.invalid.map((entry) => entry.tag)).toEqual([3]);
    expect(h.health).toEqual([false, true]);
    expect(h.lines.filter((line) => line.msg === 'could not number deliveries; retrying').map((line) => line.level)).toEqual([40]);
  });

  it('keeps retrying every second while the store fails, reporting each failure', async () => {
    const h = await harness();
    h.numbering.reply = 'fail';
    push(h, 'm1');
    await flush();
    await vi.advanceTimersByTimeAsync(3_000);
    expect(h.numbering.calls).toHaveLength(4);
    expect(h.health).toEqual([false, false, false, false]);
    expect(h.batches).toHaveLength(0);
    h.numbering.reply = 'store';
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.numbering.calls).toHaveLength(5);
    expect(numbered(h)).toEqual([[1, 1]]);
    expect(h.health).toEqual([false, false, false, false, true]);
  });

  it('retryNow tries a failed batch at once, and does nothing when no retry is pending', async () => {
    const h = await harness();
    h.intake.retryNow();
    await flush();
    expect(h.numbering.calls).toHaveLength(0);
    h.numbering.reply = 'fail';
    push(h, 'm1', 'm2');
    await flush();
    expect(h.numbering.calls).toHaveLength(1);
    h.numbering.reply = 'store';
    h.intake.retryNow();
    await flush();
    expect(h.numbering.calls).toHaveLength(2);
    expect(numbered(h)).toEqual([
      [1, 1],
      [2, 2],
    ]);
    // The retry timer was cancelled: nothing runs at the old retry time.
    await vi.advanceTimersByTimeAsync(2_000);
    expect(h.numbering.calls).toHaveLength(2);
    expect(h.batches).toHaveLength(1);
  });

  it('takes a reply with fewer seqs than messages as a failure: nothing numbered, logged as an error, retried', async () => {
    const h = await harness();
    h.numbering.reply = 'short';
    push(h, 'm1', 'm2', 'm3');
    await flush();
    expect(h.batches).toHaveLength(0);
    expect(h.health).toEqual([false]);
    expect(h.intake.pendingCount).toBe(3);
    const logged = h.lines.filter((line) => line.msg === 'could not number deliveries; retrying');
    expect(logged.map((line) => line.level)).toEqual([50]);
    h.numbering.reply = 'store';
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.numbering.calls.map((call) => call.ids)).toEqual([
      ['m1', 'm2', 'm3'],
      ['m1', 'm2', 'm3'],
    ]);
    // The short call numbered all three in the memory store; the retry gets the same seqs back.
    expect(numbered(h)).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
  });

  // A reply without one seq per message is logged as an error, whether the Redis store detected
  // it (RELAY_ERR_STORE_REPLY) or the intake did.
  it('logs a malformed reply the store reports itself (RELAY_ERR_STORE_REPLY) as an error', async () => {
    const h = await harness();
    h.numbering.reply = new RelayError(ErrorCode.storeReply, 'malformed store reply to assign: 2 results (expected 3 results)');
    push(h, 'm1', 'm2', 'm3');
    await flush();
    expect(h.health).toEqual([false]);
    expect(h.lines.filter((line) => line.msg === 'could not number deliveries; retrying').map((line) => line.level)).toEqual([50]);
  });

  // An ordinary outage (the breaker's RELAY_ERR_STORE_UNAVAILABLE) is a warning, once a second
  // for as long as it lasts.
  it('logs an outage the breaker reports (RELAY_ERR_STORE_UNAVAILABLE) as a warning', async () => {
    const h = await harness();
    h.numbering.reply = new RelayError(ErrorCode.storeUnavailable, 'redis unavailable (breaker open): Breaker is open', {
      retryable: true,
    });
    push(h, 'm1');
    await flush();
    expect(h.health).toEqual([false]);
    expect(h.lines.filter((line) => line.msg === 'could not number deliveries; retrying').map((line) => line.level)).toEqual([40]);
  });

  it('on a null reply calls onEpochGone once and numbers nothing more', async () => {
    const h = await harness();
    h.numbering.reply = 'null';
    push(h, 'm1', 'm2');
    await flush();
    expect(h.epochGone).toBe(1);
    expect(h.batches).toHaveLength(0);
    expect(h.health).toEqual([]);
    expect(h.intake.pendingCount).toBe(0);
    h.numbering.reply = 'store';
    push(h, 'm3');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.numbering.calls).toHaveLength(1);
    expect(h.epochGone).toBe(1);
    expect(h.intake.pendingCount).toBe(0);
  });

  it('stop() drops what is pending and ignores the reply in flight', async () => {
    const h = await harness();
    h.numbering.gated = true;
    push(h, 'm1', 'm2');
    await flush();
    push(h, 'm3');
    expect(h.intake.pendingCount).toBe(1);
    h.intake.stop();
    expect(h.intake.pendingCount).toBe(0);
    h.numbering.release();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.numbering.calls).toHaveLength(1);
    expect(h.batches).toHaveLength(0);
    expect(h.health).toEqual([]);
    expect(h.epochGone).toBe(0);
    push(h, 'm4');
    await flush();
    expect(h.intake.pendingCount).toBe(0);
    expect(h.numbering.calls).toHaveLength(1);
  });

  it('stop() during a failing call schedules no retry', async () => {
    const h = await harness();
    h.numbering.gated = true;
    h.numbering.reply = 'fail';
    push(h, 'm1');
    await flush();
    h.intake.stop();
    h.numbering.release();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.numbering.calls).toHaveLength(1);
    expect(h.health).toEqual([]);
    expect(h.intake.pendingCount).toBe(0);
  });

  it('stop() cancels a scheduled retry', async () => {
    const h = await harness();
    h.numbering.reply = 'fail';
    push(h, 'm1');
    await flush();
    h.intake.stop();
    h.numbering.reply = 'store';
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.numbering.calls).toHaveLength(1);
    expect(h.batches).toHaveLength(0);
  });

  it('drain() resolves at once when nothing is pending', async () => {
    const h = await harness();
    let drained = false;
    const drain = h.intake.drain().then(() => {
      drained = true;
    });
    await flush();
    expect(drained).toBe(true);
    await drain;
    expect(h.numbering.calls).toHaveLength(0);
  });

  it('drain() resolves once everything pushed, also while it ran, is numbered', async () => {
    const h = await harness();
    h.numbering.gated = true;
    push(h, 'm1', 'm2');
    let drained = false;
    const drain = h.intake.drain().then(() => {
      drained = true;
    });
    await flush();
    push(h, 'm3');
    await flush();
    expect(drained).toBe(false);
    h.numbering.release();
    await flush();
    await drain;
    expect(drained).toBe(true);
    expect(numbered(h).map(([, seq]) => seq)).toEqual([1, 2, 3]);
    expect(h.intake.pendingCount).toBe(0);
  });

  it('drain() returns when a batch failed, keeping it, and runs a scheduled retry at once', async () => {
    const h = await harness();
    h.numbering.reply = 'fail';
    push(h, 'm1', 'm2');
    await flush();
    expect(h.numbering.calls).toHaveLength(1);
    // A retry is scheduled for 1 s later; drain tries now instead.
    await h.intake.drain();
    expect(h.numbering.calls).toHaveLength(2);
    expect(h.intake.pendingCount).toBe(2);
    expect(h.batches).toHaveLength(0);
    h.numbering.reply = 'store';
    await h.intake.drain();
    expect(h.numbering.calls).toHaveLength(3);
    expect(numbered(h)).toEqual([
      [1, 1],
      [2, 2],
    ]);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(h.numbering.calls).toHaveLength(3);
  });

  it('after a drain that failed, the next retry comes 1 s after that failure', async () => {
    const h = await harness();
    h.numbering.reply = 'fail';
    push(h, 'm1');
    await flush();
    await vi.advanceTimersByTimeAsync(500);
    await h.intake.drain();
    expect(h.numbering.calls).toHaveLength(2);
    // The retry of the first failure (due at 1 s) was replaced by one due at 1.5 s.
    await vi.advanceTimersByTimeAsync(999);
    expect(h.numbering.calls).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.numbering.calls).toHaveLength(3);
  });

  it('waits for `ready` before the first store call', async () => {
    let open!: () => void;
    const ready = new Promise<void>((resolve) => {
      open = resolve;
    });
    const h = await harness({ ready });
    push(h, 'm1');
    h.intake.push(jsonDelivery(2, 'm2', { messageId: undefined }));
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.numbering.calls).toHaveLength(0);
    expect(h.invalid).toHaveLength(0);
    push(h, 'm3');
    open();
    await flush();
    expect(h.numbering.calls.map((call) => call.ids)).toEqual([['m1', 'm3']]);
    expect(h.invalid.map((entry) => entry.tag)).toEqual([2]);
    expect(numbered(h)).toEqual([
      [1, 1],
      [3, 2],
    ]);
  });

  it('reports the store down on a failed batch and up on each numbered batch', async () => {
    const h = await harness();
    push(h, 'm1');
    await flush();
    expect(h.health).toEqual([true]);
    h.numbering.reply = 'fail';
    push(h, 'm2');
    await flush();
    expect(h.health).toEqual([true, false]);
    h.numbering.reply = 'store';
    await vi.advanceTimersByTimeAsync(1_000);
    expect(h.health).toEqual([true, false, true]);
    push(h, 'm3');
    await flush();
    expect(h.health).toEqual([true, false, true, true]);
    expect(numbered(h).map(([, seq]) => seq)).toEqual([1, 2, 3]);
  });

  it('numbers each batch with the position of the moment it is sent', async () => {
    const h = await harness();
    push(h, 'm1', 'm2', 'm3');
    await flush();
    push(h, 'm4');
    await flush();
    expect(h.numbering.calls.map((call) => call.seen)).toEqual([0, 3]);
    // A position above what the store holds (it went back in time) ends the numbering.
    h.seen = 99;
    push(h, 'm5');
    await flush();
    expect(h.numbering.calls.map((call) => call.seen)).toEqual([0, 3, 99]);
    expect(h.epochGone).toBe(1);
    expect(numbered(h).map(([, seq]) => seq)).toEqual([1, 2, 3, 4]);
  });
});
