import { describe, expect, it } from 'vitest';
import { Backoff, backoffCeilingMs, backoffDelayMs } from '../../src/client/backoff.js';

const options = { initialDelayMs: 500, maxDelayMs: 30_000 };
const almostOne = 1 - Number.EPSILON;

describe('backoffDelayMs', () => {
  it('doubles the jitter window per attempt until the cap', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7, 20, 2000].map((attempt) => backoffCeilingMs(attempt, options))).toEqual([
      500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000, 30_000,
    ]);
  });

  it('stays within [0, ceiling) for every attempt (full jitter)', () => {
    for (let attempt = 0; attempt < 12; attempt += 1) {
      const ceiling = backoffCeilingMs(attempt, options);
      expect(backoffDelayMs(attempt, options, () => 0)).toBe(0);
      const highest = backoffDelayMs(attempt, options, () => almostOne);
      expect(highest).toBeLessThan(ceiling);
      expect(highest).toBeGreaterThanOrEqual(ceiling - 1);
    }
  });

  it('scales linearly with the random draw, so delays spread over the whole window', () => {
    const draws = [0.1, 0.25, 0.5, 0.75, 0.9];
    expect(draws.map((r) => backoffDelayMs(3, options, () => r))).toEqual([400, 1000, 2000, 3000, 3600]);
  });

  it('never waits less than the retry-after hint, and adds jitter on top of it', () => {
    expect(backoffDelayMs(0, options, () => 0, 3_000)).toBe(3_000);
    expect(backoffDelayMs(0, options, () => 0.5, 3_000)).toBe(3_250);
    expect(backoffDelayMs(2, options, () => 0.5, 3_000)).toBe(4_000);
    // A hint above the cap is honoured, not capped.
    expect(backoffDelayMs(9, options, () => 0, 60_000)).toBe(60_000);
  });
});

describe('Backoff', () => {
  it('counts attempts and starts over after reset', () => {
    const backoff = new Backoff(options, () => 0.5);
    expect([backoff.next(), backoff.next(), backoff.next()]).toEqual([250, 500, 1000]);
    expect(backoff.attempt).toBe(3);
    backoff.reset();
    expect(backoff.attempt).toBe(0);
    expect(backoff.next()).toBe(250);
  });

  it('counts a retry-after attempt like any other', () => {
    const backoff = new Backoff(options, () => 0.5);
    expect(backoff.next(1_000)).toBe(1_250);
    expect(backoff.next()).toBe(500);
  });
});
