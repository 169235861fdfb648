import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/log.js';
import { ALARM_PROBE_MS, AlarmProbe } from '../../src/server/alarm-probe.js';
import { backgroundClock } from '../../src/delivery/background-clock.js';

function probeWith(touch: () => Promise<void>, blocked: () => boolean = () => false): AlarmProbe {
  return new AlarmProbe({ touch, blocked, clock: backgroundClock, logger: createLogger('silent') });
}

describe('AlarmProbe', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('probes at start, then once per interval, and never after stop()', async () => {
    let touches = 0;
    const probe = probeWith(async () => {
      touches += 1;
    });
    probe.start();
    expect(touches).toBe(1);
    await vi.advanceTimersByTimeAsync(ALARM_PROBE_MS * 3);
    expect(touches).toBe(4);
    probe.stop();
    await vi.advanceTimersByTimeAsync(ALARM_PROBE_MS * 3);
    expect(touches).toBe(4);
  });

  it('keeps one probe in flight, and none while the publisher is known to be blocked', async () => {
    let touches = 0;
    let finish: () => void = () => undefined;
    let blocked = false;
    const probe = probeWith(
      () =>
        new Promise<void>((resolve) => {
          touches += 1;
          finish = resolve;
        }),
      () => blocked,
    );
    probe.start();
    await vi.advanceTimersByTimeAsync(ALARM_PROBE_MS * 2);
    expect(touches).toBe(1);
    finish();
    blocked = true;
    await vi.advanceTimersByTimeAsync(ALARM_PROBE_MS * 2);
    expect(touches).toBe(1);
    blocked = false;
    await vi.advanceTimersByTimeAsync(ALARM_PROBE_MS);
    expect(touches).toBe(2);
    probe.stop();
  });

  it('survives a failing probe and probes again on the next interval', async () => {
    let touches = 0;
    const probe = probeWith(async () => {
      touches += 1;
      throw new Error('channel closed');
    });
    probe.start();
    await vi.advanceTimersByTimeAsync(ALARM_PROBE_MS);
    expect(touches).toBe(2);
    probe.stop();
  });
});
