import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AckCoalescer, ackThreshold } from '../../src/client/ack-coalescer.js';
import { systemClock } from '../../src/client/clock.js';

function coalescer(window: number, maxBatch = 100, maxDelayMs = 50): { acks: number[]; acker: AckCoalescer } {
  const acks: number[] = [];
  const acker = new AckCoalescer({ window, maxBatch, maxDelayMs, clock: systemClock, send: (seq) => acks.push(seq) });
  return { acks, acker };
}

describe('AckCoalescer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('forces an ack at half the window, or the batch size when smaller, and at least every message for window 1', () => {
    expect(ackThreshold(20, 100)).toBe(10);
    expect(ackThreshold(20, 4)).toBe(4);
    expect(ackThreshold(3, 100)).toBe(1);
    expect(ackThreshold(1, 100)).toBe(1);
  });

  it('sends one cumulative ack when half the window is processed, without waiting for the timer', () => {
    const { acks, acker } = coalescer(10);
    for (let seq = 1; seq <= 4; seq += 1) acker.processed(seq);
    expect(acks).toEqual([]);
    acker.processed(5);
    expect(acks).toEqual([5]);
    expect(acker.unacked).toBe(0);
  });

  it('acks the rest after maxDelayMs, once', () => {
    const { acks, acker } = coalescer(10);
    acker.processed(1);
    acker.processed(2);
    vi.advanceTimersByTime(49);
    expect(acks).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(acks).toEqual([2]);
    vi.advanceTimersByTime(1_000);
    expect(acks).toEqual([2]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never acks a seq twice nor goes backwards', () => {
    const { acks, acker } = coalescer(2);
    acker.processed(1);
    acker.processed(1);
    acker.processed(3);
    acker.processed(2);
    acker.flush();
    vi.advanceTimersByTime(100);
    expect(acks).toEqual([1, 3]);
  });

  it('keeps the window moving: processed-but-unacked messages never exceed half the window', () => {
    for (const window of [1, 2, 3, 7, 20, 100]) {
      const { acks, acker } = coalescer(window);
      let unackedAtRelay = 0;
      for (let seq = 1; seq <= 5 * window; seq += 1) {
        unackedAtRelay += 1;
        acker.processed(seq);
        if (acks.at(-1) === seq) unackedAtRelay = 0;
        expect(unackedAtRelay).toBeLessThanOrEqual(Math.floor(window / 2));
      }
    }
  });

  it('does nothing after dispose', () => {
    const { acks, acker } = coalescer(10);
    acker.processed(1);
    acker.dispose();
    vi.advanceTimersByTime(100);
    acker.processed(2);
    acker.flush();
    expect(acks).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
