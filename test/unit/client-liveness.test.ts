import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { systemClock } from '../../src/client/clock.js';
import { LivenessMonitor } from '../../src/client/liveness.js';

describe('LivenessMonitor', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function monitor(heartbeatMs: number, withPings: boolean) {
    const events: string[] = [];
    const liveness = new LivenessMonitor({
      heartbeatMs,
      clock: systemClock,
      onDead: () => events.push('dead'),
      ...(withPings ? { sendPing: () => events.push('ping') } : {}),
    });
    return { events, liveness };
  }

  it('declares a silent connection dead exactly two heartbeats after the last sign of life', () => {
    const { events, liveness } = monitor(1_000, false);
    liveness.start();
    vi.advanceTimersByTime(1_500);
    liveness.seen();
    vi.advanceTimersByTime(1_999);
    expect(events).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(events).toEqual(['dead']);
    vi.advanceTimersByTime(10_000);
    expect(events).toEqual(['dead']);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('stays alive while signs of life keep coming', () => {
    const { events, liveness } = monitor(1_000, false);
    liveness.start();
    for (let i = 0; i < 50; i += 1) {
      vi.advanceTimersByTime(900);
      liveness.seen();
    }
    expect(events).toEqual([]);
    liveness.stop();
    expect(vi.getTimerCount()).toBe(0);
  });

  it('sends an application ping every heartbeat when the runtime cannot see WebSocket pings', () => {
    const { events, liveness } = monitor(1_000, true);
    liveness.start();
    vi.advanceTimersByTime(1_000);
    expect(events).toEqual(['ping']);
    liveness.seen();
    vi.advanceTimersByTime(1_000);
    expect(events).toEqual(['ping', 'ping']);
    vi.advanceTimersByTime(999);
    expect(events).toEqual(['ping', 'ping']);
    vi.advanceTimersByTime(1);
    // Silent since t=1000: dead at t=3000, and no ping is wasted on a dead connection.
    expect(events).toEqual(['ping', 'ping', 'dead']);
    vi.advanceTimersByTime(5_000);
    expect(events).toHaveLength(3);
  });

  it('is disabled by a zero heartbeat', () => {
    const { events, liveness } = monitor(0, true);
    liveness.start();
    vi.advanceTimersByTime(60_000);
    expect(events).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('never fires after stop', () => {
    const { events, liveness } = monitor(1_000, true);
    liveness.start();
    vi.advanceTimersByTime(500);
    liveness.stop();
    vi.advanceTimersByTime(10_000);
    expect(events).toEqual([]);
  });
});
