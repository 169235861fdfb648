import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitUntil } from '../../src/wait-until.js';

describe('waitUntil', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: 0 });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('resolves true at the first check that holds, polling every intervalMs', async () => {
    let checks = 0;
    const waiting = waitUntil(() => ++checks === 4, { timeoutMs: 1_000, intervalMs: 10 });
    await vi.advanceTimersByTimeAsync(30);
    expect(await waiting).toBe(true);
    expect(checks).toBe(4);
  });

  it('resolves false after timeoutMs, having checked one last time at the deadline', async () => {
    let checks = 0;
    const waiting = waitUntil(() => (++checks, false), { timeoutMs: 100, intervalMs: 30 });
    await vi.advanceTimersByTimeAsync(200);
    expect(await waiting).toBe(false);
    // At 0, 30, 60, 90 and 100 ms.
    expect(checks).toBe(5);
  });

  it('rejects naming what it waited for when `what` is set, describing the state at the failure', async () => {
    let state = 'starting';
    const waiting = waitUntil(() => false, { timeoutMs: 50, what: () => `ready (state ${state})` });
    const outcome = expect(waiting).rejects.toThrow('timed out after 50 ms waiting for ready (state stuck)');
    state = 'stuck';
    await vi.advanceTimersByTimeAsync(100);
    await outcome;
  });

  it('ends early (false) once giveUp holds', async () => {
    let checks = 0;
    const waiting = waitUntil(() => (++checks, false), { timeoutMs: 1_000, intervalMs: 10, giveUp: () => checks === 3 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(await waiting).toBe(false);
    expect(checks).toBe(3);
  });

  it('awaits an asynchronous condition', async () => {
    let checks = 0;
    const waiting = waitUntil(async () => ++checks >= 2, { timeoutMs: 1_000, intervalMs: 10 });
    await vi.advanceTimersByTimeAsync(10);
    expect(await waiting).toBe(true);
    expect(checks).toBe(2);
  });

  it('rejects with an AbortError when its signal aborts', async () => {
    const controller = new AbortController();
    const waiting = waitUntil(() => false, { timeoutMs: 1_000, intervalMs: 10, signal: controller.signal });
    const outcome = expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    await vi.advanceTimersByTimeAsync(25);
    controller.abort();
    await outcome;
  });
});
