/** TokenExpiry (server/token-expiry.ts) on fake timers: when a connection's token runs out. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backgroundClock } from '../../src/delivery/background-clock.js';
import { TokenExpiry } from '../../src/server/token-expiry.js';

describe('TokenExpiry', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  it('expires at the expiry, at once for one already past, and never after stop()', () => {
    let expired = 0;
    const expiry = new TokenExpiry(backgroundClock, () => (expired += 1));
    expiry.arm(Date.now() + 5_000);
    vi.advanceTimersByTime(4_999);
    expect(expired).toBe(0);
    vi.advanceTimersByTime(1);
    expect(expired).toBe(1);
    expiry.arm(Date.now() - 1);
    expect(expired).toBe(2);
    expiry.arm(Date.now() + 1_000);
    expiry.stop();
    vi.advanceTimersByTime(10_000);
    expect(expired).toBe(2);
  });

  it('keeps the expiry of the latest refresh when an earlier one is verified after it', () => {
    let expired = 0;
    const expiry = new TokenExpiry(backgroundClock, () => (expired += 1));
    expiry.arm(Date.now() + 1_000);
    const slow = expiry.beginRefresh();
    const fast = expiry.beginRefresh();
    expiry.applyRefresh(fast, Date.now() + 60_000);
    expiry.applyRefresh(slow, Date.now() + 2_000);
    vi.advanceTimersByTime(59_999);
    expect(expired).toBe(0);
    vi.advanceTimersByTime(1);
    expect(expired).toBe(1);
  });

  it('waits out an expiry beyond the longest timer Node.js keeps', () => {
    let expired = 0;
    const expiry = new TokenExpiry(backgroundClock, () => (expired += 1));
    const days30 = 30 * 24 * 3600 * 1000;
    expiry.arm(Date.now() + days30);
    vi.advanceTimersByTime(days30 - 1);
    expect(expired).toBe(0);
    vi.advanceTimersByTime(1);
    expect(expired).toBe(1);
  });
});
