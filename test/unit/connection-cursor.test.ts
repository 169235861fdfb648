import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backgroundClock } from '../../src/delivery/background-clock.js';
import { ConnectionCursor, type CursorSource, type Subscriber } from '../../src/delivery/connection-cursor.js';
import type { HeldMessage } from '../../src/delivery/inflight-ledger.js';
import type { HistoryEntry } from '../../src/store/store.js';
import { capturingLogger } from '../helpers/delivery-fakes.js';

/** Fragments say where a message came from: `data` is "held" or "history". */
const fragment = (seq: number, from: 'held' | 'history') => `"id":"m${seq}","ts":1,"contentType":"application/json","data":"${from}"`;

/** A connection that records the frames it is sent and can be made unwritable, or full after `budget` frames. */
class Sub implements Subscriber {
  readonly session = 's1';
  readonly raw: string[] = [];
  resyncs: string[] = [];
  open = true;
  budget = Infinity;
  constructor(readonly window: number) {}
  send(frame: string): void {
    this.raw.push(frame);
    this.budget -= 1;
  }
  writable(): boolean {
    return this.open && this.budget > 0;
  }
  status(): void {}
  reset(): void {}
  resync(reason: string): void {
    this.resyncs.push(reason);
  }
  get frames(): { seq: number; redelivered: boolean; data: string }[] {
    return this.raw.map((frame) => JSON.parse(frame) as { seq: number; redelivered: boolean; data: string });
  }
  get seqs(): number[] {
    return this.frames.map((frame) => frame.seq);
  }
}

/** A user's stream: what the consumer holds, and a history that may fail, lose the epoch or wait. */
class Source implements CursorSource {
  epoch = 'e1';
  head = 0;
  closed = false;
  readonly holding = new Map<number, HeldMessage>();
  readonly stored = new Map<number, HistoryEntry>();
  readonly reads: { epoch: string; from: number; to: number }[] = [];
  readonly sentLog: [number, boolean][] = [];
  reply: 'ok' | 'fail' | 'null' = 'ok';
  gated = false;
  epochLosses = 0;
  private waiting: (() => void)[] = [];

  /** Seqs numbered: in history, and held by the consumer unless `heldToo` is false. */
  number(from: number, to: number, heldToo = true, redelivered = false): void {
    for (let seq = from; seq <= to; seq += 1) {
      this.stored.set(seq, { seq, id: `m${seq}`, storedAt: 1, fragment: fragment(seq, 'history') });
      if (heldToo) this.holding.set(seq, { tags: [seq], fragment: fragment(seq, 'held'), redelivered, ts: 1 });
    }
    this.head = Math.max(this.head, to);
  }

  held(seq: number): HeldMessage | undefined {
    return this.holding.get(seq);
  }

  async history(epoch: string, from: number, to: number): Promise<HistoryEntry[] | null> {
    this.reads.push({ epoch, from, to });
    if (this.gated) await new Promise<void>((resolve) => this.waiting.push(resolve));
    if (this.reply === 'fail') throw new Error('store down');
    if (this.reply === 'null') return null;
    const entries: HistoryEntry[] = [];
    for (let seq = from; seq <= to; seq += 1) {
      const entry = this.stored.get(seq);
      if (entry) entries.push(entry);
    }
    return entries;
  }

  release(): void {
    this.gated = false;
    for (const resolve of this.waiting.splice(0)) resolve();
  }

  sent(seq: number, redelivered: boolean): void {
    this.sentLog.push([seq, redelivered]);
  }

  epochLost(): void {
    this.epochLosses += 1;
  }
}

function cursorOn(source: Source, window: number, position = 0, highestSent = position) {
  const sub = new Sub(window);
  const { logger, lines } = capturingLogger();
  const cursor = new ConnectionCursor(sub, position, highestSent, source, backgroundClock, logger);
  return { sub, cursor, lines };
}

const flush = () => vi.advanceTimersByTimeAsync(0);

/** A cursor (window 10) whose first pump waits on a history read of seqs 1..`to` (numbered, not held). */
async function waitingOnHistory(to: number) {
  const source = new Source();
  source.number(1, to, false);
  source.gated = true;
  const { sub, cursor } = cursorOn(source, 10);
  cursor.pump();
  await flush();
  return { source, sub, cursor };
}

/** Runs `fn` `depth` microtasks from now. */
function afterMicrotasks(depth: number, fn: () => void): void {
  queueMicrotask(() => (depth === 0 ? fn() : afterMicrotasks(depth - 1, fn)));
}

describe('ConnectionCursor', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('never has more than the window sent and unacked', async () => {
    const source = new Source();
    source.number(1, 10);
    const { sub, cursor } = cursorOn(source, 3);
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([1, 2, 3]);
    expect(cursor.unacked).toBe(3);
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([1, 2, 3]);
    expect(cursor.ack(2)).toBe('ok');
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([1, 2, 3, 4, 5]);
    expect(cursor.unacked).toBe(3);
    expect(source.reads).toEqual([]);
  });

  it('sends in increasing order from the agreed position, each seq once', async () => {
    const source = new Source();
    source.number(1, 8);
    const { sub, cursor } = cursorOn(source, 100, 4);
    cursor.pump();
    await flush();
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([5, 6, 7, 8]);
    expect(cursor.cursor).toBe(8);
    source.number(9, 10);
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([5, 6, 7, 8, 9, 10]);
    expect(source.sentLog).toEqual([5, 6, 7, 8, 9, 10].map((seq) => [seq, false]));
  });

  it('writes the msg frame with the seq, the redelivered flag and the fragment as given', async () => {
    const source = new Source();
    source.number(1, 1);
    const { sub, cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(sub.raw).toEqual([`{"type":"msg","seq":1,"redelivered":false,${fragment(1, 'held')}}`]);
  });

  it('sends what the consumer holds from memory and the rest from history, preferring what it holds', async () => {
    const source = new Source();
    source.number(1, 2, false);
    source.number(3, 4, true, true);
    source.number(5, 5);
    const { sub, cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(source.reads).toEqual([{ epoch: 'e1', from: 1, to: 5 }]);
    expect(sub.frames.map(({ seq, redelivered, data }) => [seq, redelivered, data])).toEqual([
      [1, true, 'history'],
      [2, true, 'history'],
      [3, true, 'held'],
      [4, true, 'held'],
      [5, false, 'held'],
    ]);
  });

  it('reads history in runs of at most 100, bounded by the head and the window', async () => {
    const source = new Source();
    source.number(1, 250, false);
    const wide = cursorOn(source, 1_000);
    wide.cursor.pump();
    await flush();
    expect(source.reads.map(({ from, to }) => [from, to])).toEqual([
      [1, 100],
      [101, 200],
      [201, 250],
    ]);
    expect(wide.sub.seqs).toEqual(Array.from({ length: 250 }, (_, i) => i + 1));
    source.reads.length = 0;
    const narrow = cursorOn(source, 5, 10);
    narrow.cursor.pump();
    await flush();
    expect(source.reads.map(({ from, to }) => [from, to])).toEqual([[11, 15]]);
    expect(narrow.sub.seqs).toEqual([11, 12, 13, 14, 15]);
  });

  it('tells the connection to resync when history no longer holds the next seq', async () => {
    const source = new Source();
    source.number(1, 5, false);
    source.stored.delete(1);
    source.stored.delete(2);
    const { sub, cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(sub.resyncs).toEqual(['history no longer holds seq 1']);
    expect(sub.seqs).toEqual([]);
    expect(source.reads).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(source.reads).toHaveLength(1);
  });

  it('does not resync when the missing seq arrived from the consumer during the read, and sends it', async () => {
    const source = new Source();
    source.head = 2;
    source.gated = true;
    const { sub, cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(source.reads).toHaveLength(1);
    // RabbitMQ delivers 1 and 2 again while history is being read; the stream pumps.
    source.number(1, 2);
    source.stored.clear();
    cursor.pump();
    source.release();
    await flush();
    expect(sub.resyncs).toEqual([]);
    expect(sub.seqs).toEqual([1, 2]);
    expect(sub.frames.map((frame) => frame.data)).toEqual(['held', 'held']);
  });

  it('coalesces pump calls made while a pump runs into one more run', async () => {
    const { source, sub, cursor } = await waitingOnHistory(3);
    cursor.pump();
    cursor.pump();
    cursor.pump();
    await flush();
    expect(source.reads).toHaveLength(1);
    source.release();
    await flush();
    expect(sub.seqs).toEqual([1, 2, 3]);
    expect(source.reads).toHaveLength(1);
  });

  it('does not lose a pump that comes in a microtask right after a history read ended the run', async () => {
    // One store reply settles a history read and, in the same turn, numbers a new seq (a batch
    // reply settles several operations): the stream pumps again from a microtask. Whichever
    // microtask that lands in, even the one between the run's end and its promise's reactions,
    // the new seq must go out.
    for (let depth = 0; depth < 8; depth += 1) {
      const { source, sub, cursor } = await waitingOnHistory(2);
      source.release();
      afterMicrotasks(depth, () => {
        source.number(3, 3);
        cursor.pump();
      });
      await flush();
      expect(sub.seqs, `pumped ${depth} microtasks later`).toEqual([1, 2, 3]);
    }
  });

  it('retries a failed history read after 1 s', async () => {
    const source = new Source();
    source.number(1, 3, false);
    source.reply = 'fail';
    const { sub, cursor, lines } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(source.reads).toHaveLength(1);
    expect(lines.filter((line) => line.msg === 'history read failed; retrying').map((line) => line.level)).toEqual([40]);
    // A pump in between does not add a second retry timer.
    cursor.pump();
    await flush();
    expect(source.reads).toHaveLength(2);
    source.reply = 'ok';
    await vi.advanceTimersByTimeAsync(999);
    expect(source.reads).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(source.reads).toHaveLength(3);
    expect(sub.seqs).toEqual([1, 2, 3]);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(source.reads).toHaveLength(3);
    expect(sub.resyncs).toEqual([]);
  });

  it('reports the epoch lost when history says it is gone, and sends nothing', async () => {
    const source = new Source();
    source.number(1, 3, false);
    source.reply = 'null';
    const { sub, cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    await vi.advanceTimersByTimeAsync(5_000);
    expect(source.epochLosses).toBe(1);
    expect(sub.seqs).toEqual([]);
    expect(sub.resyncs).toEqual([]);
    expect(source.reads).toHaveLength(1);
  });

  it('drops a history reply read under an epoch that changed meanwhile', async () => {
    const { source, sub } = await waitingOnHistory(3);
    source.epoch = 'e2';
    source.release();
    await flush();
    expect(sub.seqs).toEqual([]);
    expect(sub.resyncs).toEqual([]);
    expect(source.epochLosses).toBe(0);
  });

  it('after a rewind sends the rewound seqs again, in order, marked redelivered', async () => {
    const source = new Source();
    source.number(1, 4);
    const { sub, cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(cursor.ack(1)).toBe('ok');
    cursor.rewindTo(1);
    expect(cursor.cursor).toBe(1);
    cursor.pump();
    await flush();
    source.number(5, 5);
    cursor.pump();
    await flush();
    expect(sub.frames.map(({ seq, redelivered }) => [seq, redelivered])).toEqual([
      [1, false],
      [2, false],
      [3, false],
      [4, false],
      [2, true],
      [3, true],
      [4, true],
      [5, false],
    ]);
    expect(source.sentLog).toEqual(sub.frames.map(({ seq, redelivered }) => [seq, redelivered]));
  });

  it('never rewinds below what the client acked, nor forward', async () => {
    const source = new Source();
    source.number(1, 5);
    const { cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    cursor.ack(3);
    cursor.rewindTo(1);
    expect(cursor.cursor).toBe(3);
    cursor.rewindTo(9);
    expect(cursor.cursor).toBe(3);
  });

  it('marks seqs up to the highest already sent to this client as redelivered', async () => {
    const source = new Source();
    source.number(1, 4);
    const { sub, cursor } = cursorOn(source, 10, 0, 2);
    cursor.pump();
    await flush();
    expect(sub.frames.map(({ seq, redelivered }) => [seq, redelivered])).toEqual([
      [1, true],
      [2, true],
      [3, false],
      [4, false],
    ]);
  });

  it('writes nothing while the connection is not writable, and goes on when pumped again', async () => {
    const source = new Source();
    source.number(1, 5);
    const { sub, cursor } = cursorOn(source, 10);
    sub.open = false;
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([]);
    sub.open = true;
    sub.budget = 2;
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([1, 2]);
    sub.budget = Infinity;
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([1, 2, 3, 4, 5]);
  });

  it('stops within a history run when the connection stops being writable', async () => {
    const source = new Source();
    source.number(1, 6, false);
    const { sub, cursor } = cursorOn(source, 10);
    sub.budget = 4;
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([1, 2, 3, 4]);
    expect(cursor.cursor).toBe(4);
    sub.budget = Infinity;
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([1, 2, 3, 4, 5, 6]);
    expect(source.reads.map(({ from, to }) => [from, to])).toEqual([
      [1, 6],
      [5, 6],
    ]);
  });

  it('sends nothing once detached or while the stream closes, and drops a read in flight', async () => {
    const { source, sub, cursor } = await waitingOnHistory(3);
    cursor.detach();
    source.release();
    await flush();
    expect(sub.seqs).toEqual([]);
    source.number(4, 5);
    cursor.pump();
    await flush();
    expect(sub.seqs).toEqual([]);
    const closing = new Source();
    closing.number(1, 3);
    closing.closed = true;
    const other = cursorOn(closing, 10);
    other.cursor.pump();
    await flush();
    expect(other.sub.seqs).toEqual([]);
  });

  it('detach cancels a scheduled history retry', async () => {
    const source = new Source();
    source.number(1, 3, false);
    source.reply = 'fail';
    const { sub, cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    cursor.detach();
    source.reply = 'ok';
    await vi.advanceTimersByTimeAsync(5_000);
    expect(source.reads).toHaveLength(1);
    expect(sub.seqs).toEqual([]);
  });

  it('answers acks: ok moves the acked mark, stale at or below it, unknown past what was sent', async () => {
    const source = new Source();
    source.number(1, 5);
    const { cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(cursor.isProgress(3)).toBe(true);
    expect(cursor.isProgress(6)).toBe(false);
    expect(cursor.ack(6)).toBe('unknown');
    expect(cursor.acked).toBe(0);
    expect(cursor.ack(3)).toBe('ok');
    expect(cursor.acked).toBe(3);
    expect(cursor.unacked).toBe(2);
    expect(cursor.isProgress(3)).toBe(false);
    expect(cursor.ack(3)).toBe('stale');
    expect(cursor.ack(2)).toBe('stale');
    expect(cursor.acked).toBe(3);
    expect(cursor.ack(5)).toBe('ok');
    expect(cursor.unacked).toBe(0);
  });

  it('counts requeue-nacks per seq and forgets those an ack passed', async () => {
    const source = new Source();
    source.number(1, 5);
    const { cursor } = cursorOn(source, 10);
    cursor.pump();
    await flush();
    expect(cursor.cursor).toBe(5);
    expect(cursor.nacked(2)).toBe(1);
    expect(cursor.nacked(2)).toBe(2);
    expect(cursor.nacked(4)).toBe(1);
    expect(cursor.nacked(2)).toBe(3);
    expect(cursor.ack(2)).toBe('ok');
    expect(cursor.nacked(2)).toBe(1);
    expect(cursor.nacked(4)).toBe(2);
    expect(cursor.ack(3)).toBe('ok');
    expect(cursor.nacked(4)).toBe(3);
    expect(cursor.ack(4)).toBe('ok');
    expect(cursor.nacked(4)).toBe(1);
  });
});
