import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConsumerCallbacks, ConsumerFactory, ConsumerHandle } from '../../src/delivery/consumer.js';
import { ConsumerSupervisor, type ConsumerSession } from '../../src/delivery/consumer-supervisor.js';
import { silentLogger } from '../../src/log.js';
import { jsonDelivery } from '../helpers/delivery-fakes.js';

/** A consumer handle that counts its closes. */
interface FakeHandle extends ConsumerHandle {
  closes: number;
}

function fakeHandle(): FakeHandle {
  const handle: FakeHandle = {
    closes: 0,
    ack: () => undefined,
    reject: () => undefined,
    sync: async () => undefined,
    close: async () => {
      handle.closes += 1;
    },
  };
  return handle;
}

/** Consumer starts that answer when the test says (`up`, `fail`), or at once with `auto`. */
class Starts {
  readonly calls: { prefetch: number; callbacks: ConsumerCallbacks; handle: FakeHandle; up(): void; fail(error: Error): void }[] = [];
  auto = false;

  factory: ConsumerFactory = (_user, prefetch, callbacks) =>
    new Promise<ConsumerHandle>((resolve, reject) => {
      const handle = fakeHandle();
      this.calls.push({ prefetch, callbacks, handle, up: () => resolve(handle), fail: reject });
      if (this.auto) resolve(handle);
    });

  get count(): number {
    return this.calls.length;
  }

  last() {
    return this.calls[this.calls.length - 1]!;
  }
}

interface Harness {
  supervisor: ConsumerSupervisor;
  starts: Starts;
  wired: ConsumerSession[];
  started: number[];
  deliveries: { session: number; tag: number }[];
  losses: { session: number; reason: string }[];
  delays: number[];
}

function harness(delay: (attempt: number) => number = (attempt) => attempt * 100): Harness {
  const starts = new Starts();
  const h: Omit<Harness, 'supervisor'> = { starts, wired: [], started: [], deliveries: [], losses: [], delays: [] };
  const supervisor = new ConsumerSupervisor({
    user: 'u1',
    prefetch: 7,
    consumers: starts.factory,
    logger: silentLogger(),
    restartDelayMs: (attempt) => {
      const ms = delay(attempt);
      h.delays.push(ms);
      return ms;
    },
    wire: (session) => {
      h.wired.push(session);
      return {
        onDelivery: (delivery) => h.deliveries.push({ session: session.id, tag: delivery.tag }),
        onLost: (reason) => h.losses.push({ session: session.id, reason }),
      };
    },
    onStarted: (session) => h.started.push(session.id),
  });
  return Object.assign(h, { supervisor });
}

const flush = () => vi.advanceTimersByTimeAsync(0);

/** Records how a promise ends, without awaiting it. */
function watch<T>(promise: Promise<T>) {
  const state: { done: boolean; value?: T; error?: unknown } = { done: false };
  promise.then(
    (value) => Object.assign(state, { done: true, value }),
    (error: unknown) => Object.assign(state, { done: true, error }),
  );
  return state;
}

describe('ConsumerSupervisor', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('starts one consumer for concurrent ensure calls, and they share its session', async () => {
    const h = harness();
    const a = watch(h.supervisor.ensure());
    const b = watch(h.supervisor.ensure());
    const c = watch(h.supervisor.ensure());
    await flush();
    expect(h.starts.count).toBe(1);
    expect(h.starts.last().prefetch).toBe(7);
    expect(h.supervisor.isStarting).toBe(true);
    expect(h.supervisor.session).toBeUndefined();
    h.starts.last().up();
    await flush();
    expect(a.value).toBeDefined();
    expect(b.value).toBe(a.value);
    expect(c.value).toBe(a.value);
    expect(a.value!.id).toBe(1);
    expect(a.value!.handle).toBe(h.starts.last().handle);
    expect(h.supervisor.session).toBe(a.value);
    expect(h.supervisor.isStarting).toBe(false);
    expect(h.started).toEqual([1]);
    expect(h.wired).toHaveLength(1);
    // With a consumer running, ensure returns it without starting another.
    expect(await h.supervisor.ensure()).toBe(a.value);
    expect(h.starts.count).toBe(1);
  });

  it('gives each consumer a fresh session with its own ledger', async () => {
    const h = harness();
    h.starts.auto = true;
    const first = await h.supervisor.ensure();
    first.ledger.received(1);
    h.starts.last().callbacks.onLost('channel closed');
    const second = await h.supervisor.ensure();
    expect(second).not.toBe(first);
    expect([first.id, second.id]).toEqual([1, 2]);
    expect(second.ledger).not.toBe(first.ledger);
    expect(second.ledger.outstandingCount).toBe(0);
    expect(first.live).toBe(false);
    expect(second.live).toBe(true);
    expect(h.started).toEqual([1, 2]);
  });

  it('rejects when the start fails and leaves no session; the next ensure starts again', async () => {
    const h = harness();
    const failure = new Error('access refused');
    const first = watch(h.supervisor.ensure());
    await flush();
    h.starts.last().fail(failure);
    await flush();
    expect(first.error).toBe(failure);
    expect(h.supervisor.session).toBeUndefined();
    expect(h.supervisor.isStarting).toBe(false);
    expect(h.started).toEqual([]);
    expect(h.wired[0]!.live).toBe(false);
    await expect(h.wired[0]!.ready).rejects.toBe(failure);
    const second = watch(h.supervisor.ensure());
    await flush();
    expect(h.starts.count).toBe(2);
    h.starts.last().up();
    await flush();
    expect(second.value?.id).toBe(2);
    expect(h.started).toEqual([2]);
  });

  it('ignores deliveries from a start that failed', async () => {
    const h = harness();
    const first = watch(h.supervisor.ensure());
    await flush();
    const start = h.starts.last();
    const callbacks = start.callbacks;
    start.fail(new Error('timed out'));
    await flush();
    expect(first.error).toBeInstanceOf(Error);
    callbacks.onDelivery(jsonDelivery(1, 'm1'));
    callbacks.onLost('channel closed');
    expect(h.deliveries).toEqual([]);
    expect(h.losses).toEqual([]);
  });

  it('drops a lost session and never calls its callbacks again', async () => {
    const h = harness();
    h.starts.auto = true;
    const session = await h.supervisor.ensure();
    const { callbacks } = h.starts.last();
    callbacks.onDelivery(jsonDelivery(1, 'm1'));
    callbacks.onLost('connection lost');
    expect(h.supervisor.session).toBeUndefined();
    expect(session.live).toBe(false);
    callbacks.onDelivery(jsonDelivery(2, 'm2'));
    callbacks.onLost('connection lost again');
    expect(h.deliveries).toEqual([{ session: 1, tag: 1 }]);
    expect(h.losses).toEqual([{ session: 1, reason: 'connection lost' }]);
    // The replacement's callbacks are its own.
    const next = await h.supervisor.ensure();
    h.starts.last().callbacks.onDelivery(jsonDelivery(1, 'm3'));
    callbacks.onDelivery(jsonDelivery(3, 'm4'));
    expect(next.id).toBe(2);
    expect(h.deliveries).toEqual([
      { session: 1, tag: 1 },
      { session: 2, tag: 1 },
    ]);
  });

  it('a consumer lost while starting ends its start without becoming current', async () => {
    const h = harness();
    const pending = watch(h.supervisor.ensure());
    await flush();
    h.starts.last().callbacks.onLost('channel closed');
    h.starts.last().up();
    await flush();
    expect(pending.value?.live).toBe(false);
    expect(h.supervisor.session).toBeUndefined();
    expect(h.started).toEqual([]);
    expect(h.losses).toEqual([{ session: 1, reason: 'channel closed' }]);
  });

  it('restarts a lost consumer after the backoff delay of each attempt, and resets the attempts once one is up', async () => {
    const h = harness((attempt) => attempt * 100);
    h.starts.auto = true;
    await h.supervisor.ensure();
    h.starts.auto = false;
    h.starts.last().callbacks.onLost('connection lost');
    h.supervisor.restartLater();
    expect(h.supervisor.restartScheduled).toBe(true);
    expect(h.supervisor.restartAttempt).toBe(1);
    await vi.advanceTimersByTimeAsync(99);
    expect(h.starts.count).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.starts.count).toBe(2);
    expect(h.supervisor.restartScheduled).toBe(false);
    // The restart fails: the next one waits the second step.
    h.starts.last().fail(new Error('broker down'));
    await flush();
    expect(h.supervisor.restartAttempt).toBe(2);
    await vi.advanceTimersByTimeAsync(199);
    expect(h.starts.count).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(h.starts.count).toBe(3);
    h.starts.last().fail(new Error('broker down'));
    await flush();
    await vi.advanceTimersByTimeAsync(300);
    expect(h.starts.count).toBe(4);
    h.starts.last().up();
    await flush();
    expect(h.delays).toEqual([100, 200, 300]);
    expect(h.supervisor.restartAttempt).toBe(0);
    expect(h.supervisor.session?.id).toBe(4);
    expect(h.started).toEqual([1, 4]);
  });

  it('restarts again when the restarted consumer is lost while starting', async () => {
    const h = harness(() => 50);
    h.starts.auto = true;
    await h.supervisor.ensure();
    h.starts.auto = false;
    h.starts.last().callbacks.onLost('connection lost');
    h.supervisor.restartLater();
    await vi.advanceTimersByTimeAsync(50);
    expect(h.starts.count).toBe(2);
    h.starts.last().callbacks.onLost('channel closed');
    h.starts.last().up();
    await flush();
    expect(h.supervisor.restartScheduled).toBe(true);
    expect(h.supervisor.restartAttempt).toBe(2);
    h.starts.auto = true;
    await vi.advanceTimersByTimeAsync(50);
    expect(h.starts.count).toBe(3);
    expect(h.supervisor.session?.id).toBe(3);
  });

  it('schedules one restart at a time, and none while a consumer runs', async () => {
    const h = harness();
    h.supervisor.restartLater();
    h.supervisor.restartLater();
    expect(h.delays).toEqual([100]);
    h.starts.auto = true;
    await vi.advanceTimersByTimeAsync(100);
    expect(h.starts.count).toBe(1);
    expect(h.supervisor.session?.id).toBe(1);
    h.supervisor.restartLater();
    expect(h.supervisor.restartScheduled).toBe(false);
    expect(h.delays).toEqual([100]);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(h.starts.count).toBe(1);
  });

  it('retryNow replaces a long backoff with the first step, and does nothing without a scheduled restart', async () => {
    const h = harness((attempt) => (attempt === 1 ? 10 : 60_000));
    h.supervisor.retryNow();
    expect(h.supervisor.restartScheduled).toBe(false);
    h.supervisor.restartLater();
    await vi.advanceTimersByTimeAsync(10);
    h.starts.last().fail(new Error('broker down'));
    await flush();
    expect(h.delays).toEqual([10, 60_000]);
    expect(h.supervisor.restartAttempt).toBe(2);
    h.supervisor.retryNow();
    expect(h.supervisor.restartAttempt).toBe(1);
    expect(h.delays).toEqual([10, 60_000, 10]);
    await vi.advanceTimersByTimeAsync(10);
    expect(h.starts.count).toBe(2);
    h.starts.last().up();
    await flush();
    expect(h.supervisor.session?.id).toBe(2);
    // The cancelled 60 s restart never runs.
    await vi.advanceTimersByTimeAsync(120_000);
    expect(h.starts.count).toBe(2);
    h.supervisor.retryNow();
    expect(h.supervisor.restartScheduled).toBe(false);
  });

  it('close() closes the running consumer once, marks it dead, and is idempotent', async () => {
    const h = harness();
    h.starts.auto = true;
    const session = await h.supervisor.ensure();
    await h.supervisor.close();
    await h.supervisor.close();
    expect(h.starts.last().handle.closes).toBe(1);
    expect(session.live).toBe(false);
    expect(h.supervisor.session).toBeUndefined();
    h.starts.last().callbacks.onDelivery(jsonDelivery(1, 'm1'));
    expect(h.deliveries).toEqual([]);
  });

  it('close() while a start is under way waits at most 2 s; the late consumer closes itself', async () => {
    const h = harness();
    const start = watch(h.supervisor.ensure());
    await flush();
    const closed = watch(h.supervisor.close());
    await vi.advanceTimersByTimeAsync(1_999);
    expect(closed.done).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(closed.done).toBe(true);
    expect(closed.error).toBeUndefined();
    expect(h.starts.last().handle.closes).toBe(0);
    h.starts.last().up();
    await flush();
    expect(h.starts.last().handle.closes).toBe(1);
    expect(start.value?.live).toBe(false);
    expect(h.supervisor.session).toBeUndefined();
    expect(h.started).toEqual([]);
  });

  it('close() while a start is under way returns as soon as the start ends', async () => {
    const h = harness();
    const start = watch(h.supervisor.ensure());
    await flush();
    const closed = watch(h.supervisor.close());
    await vi.advanceTimersByTimeAsync(500);
    h.starts.last().up();
    await flush();
    expect(closed.done).toBe(true);
    expect(h.starts.last().handle.closes).toBe(1);
    expect(start.value?.live).toBe(false);
    expect(h.started).toEqual([]);
  });

  it('stop() cancels a scheduled restart and no restart is scheduled after it', async () => {
    const h = harness();
    h.supervisor.restartLater();
    h.supervisor.stop();
    expect(h.supervisor.restartScheduled).toBe(false);
    h.supervisor.restartLater();
    h.supervisor.retryNow();
    expect(h.supervisor.restartScheduled).toBe(false);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.starts.count).toBe(0);
    expect(h.delays).toEqual([100]);
  });

  it('close() cancels a scheduled restart', async () => {
    const h = harness();
    h.starts.auto = true;
    await h.supervisor.ensure();
    h.starts.last().callbacks.onLost('connection lost');
    h.supervisor.restartLater();
    await h.supervisor.close();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.starts.count).toBe(1);
    expect(h.supervisor.session).toBeUndefined();
  });

  // UserStream.attach can call ensure() after close() ran (between its last `closed` check and
  // ensure): no channel may be opened for a consumer that would close itself at once.
  it('ensure() after close() rejects without starting a consumer', async () => {
    const h = harness();
    h.starts.auto = true;
    await h.supervisor.close();
    await expect(h.supervisor.ensure()).rejects.toThrow(/closed/);
    expect(h.starts.count).toBe(0);
    expect(h.wired).toHaveLength(0);
  });
});
