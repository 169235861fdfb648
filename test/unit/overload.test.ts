import { afterEach, describe, expect, it, vi } from 'vitest';
import { AdmissionControl, jitteredRetryAfter } from '../../src/overload/admission.js';
import { LagMonitor } from '../../src/overload/lag-monitor.js';
import { TokenBucket } from '../../src/overload/token-bucket.js';

const limits = { maxConnections: 10, connectionRatePerSec: 2, connectionBurst: 3, maxPendingHellos: 5, eventLoopLagShedMs: 200 };
const idle = { connections: 0, pendingHellos: 0, eventLoopLagMs: 0 };

describe('TokenBucket', () => {
  it('allows the burst, then the rate', () => {
    const bucket = new TokenBucket(2, 3, 0);
    expect([bucket.take(0), bucket.take(0), bucket.take(0), bucket.take(0)]).toEqual([true, true, true, false]);
    expect(bucket.msUntilToken()).toBe(500);
    expect(bucket.take(499)).toBe(false);
    expect(bucket.take(1_000)).toBe(true);
  });

  it('says when the next token comes and when it is full again, taking nothing', () => {
    const bucket = new TokenBucket(0.5, 2, 0);
    expect(bucket.isFull(0)).toBe(true);
    expect([bucket.take(0), bucket.take(0)]).toEqual([true, true]);
    expect(bucket.msUntilTokenAt(0)).toBe(2_000);
    expect(bucket.msUntilTokenAt(1_500)).toBe(500);
    expect(bucket.msUntilTokenAt(2_000)).toBe(0);
    expect(bucket.isFull(3_999)).toBe(false);
    expect(bucket.isFull(4_000)).toBe(true);
  });
});

describe('AdmissionControl', () => {
  it('refuses by reason, in order of severity', () => {
    const admission = new AdmissionControl(limits, 0, () => 0.5);
    expect(admission.admit({ ...idle, connections: 10 }, 0)).toMatchObject({ ok: false, reason: 'max-connections' });
    expect(admission.admit({ ...idle, eventLoopLagMs: 250 }, 0)).toMatchObject({ ok: false, reason: 'event-loop-lag' });
    expect(admission.admit({ ...idle, pendingHellos: 5 }, 0)).toMatchObject({ ok: false, reason: 'pending-hellos' });
    expect(admission.admit(idle, 0)).toEqual({ ok: true });
  });

  it('rate-limits connections and says when to come back', () => {
    const admission = new AdmissionControl(limits, 0, () => 0);
    for (let i = 0; i < 3; i += 1) expect(admission.admit(idle, 0).ok).toBe(true);
    const refused = admission.admit(idle, 0);
    expect(refused).toMatchObject({ ok: false, reason: 'connection-rate' });
    expect(refused.ok === false && refused.retryAfterMs).toBeGreaterThanOrEqual(1_000 + 500);
  });

  it('spreads retry-after over one base interval', () => {
    expect(jitteredRetryAfter('connection-rate', () => 0)).toBe(1_000);
    expect(jitteredRetryAfter('connection-rate', () => 0.999)).toBe(1_999);
    expect(jitteredRetryAfter('max-connections', () => 0.5)).toBe(15_000);
  });
});

describe('LagMonitor', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reports a stall right after it and forgets it after one window', async () => {
    vi.useFakeTimers({ now: 0 });
    const monitor = new LagMonitor(100, 1_000);
    vi.advanceTimersByTime(300);
    expect(monitor.lagMs).toBe(0);
    vi.setSystemTime(Date.now() + 450);
    vi.advanceTimersByTime(100);
    expect(monitor.lagMs).toBeGreaterThanOrEqual(400);
    vi.advanceTimersByTime(1_100);
    expect(monitor.lagMs).toBe(0);
    monitor.close();
  });
});
