/**
 * PresenceTracker on fake timers with a recording store: what it writes and when (per
 * connection, never per message; refresh every 20 s, sweep every 5 s), that each move the store
 * reports is published once, and that failures are counted, not thrown.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { backgroundClock } from '../../src/delivery/background-clock.js';
import { RelayEvents } from '../../src/events.js';
import type { Logger } from '../../src/log.js';
import type { PresenceOperation, PresenceStore, PresenceTransition, UserPresence } from '../../src/presence/presence-store.js';
import { PRESENCE_TIMING, PresenceTracker, type PresenceEvent } from '../../src/presence/presence-tracker.js';
import { capturingLogger } from '../helpers/delivery-fakes.js';

/** Records every call; answers `apply` with the moves queued in `nextMoves`, `sweep` with `sweepMoves`. */
class RecordingStore implements PresenceStore {
  readonly applied: PresenceOperation[][] = [];
  sweeps = 0;
  nextMoves: PresenceTransition[][] = [];
  sweepMoves: PresenceTransition[][] = [];
  failWith: Error | undefined;
  /** When set, `apply` waits for it. */
  gate: Promise<void> | undefined;

  async apply(operations: readonly PresenceOperation[]): Promise<PresenceTransition[]> {
    this.applied.push([...operations]);
    if (this.gate) await this.gate;
    if (this.failWith) throw this.failWith;
    return this.nextMoves.shift() ?? [];
  }

  async sweep(): Promise<PresenceTransition[]> {
    this.sweeps += 1;
    if (this.failWith) throw this.failWith;
    return this.sweepMoves.shift() ?? [];
  }

  read(): Promise<UserPresence[]> {
    return Promise.resolve([]);
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const move = (user: string, online: boolean): PresenceTransition => ({ user, online, connections: online ? 1 : 0, at: 1_000 });
const kinds = (operations: PresenceOperation[]) => operations.map((op) => `${op.kind} ${op.user}/${op.connection}`);

function setup(publish: (event: PresenceEvent) => Promise<void> = () => Promise.resolve(), logger?: Logger) {
  const store = new RecordingStore();
  const events = new RelayEvents();
  const published: PresenceEvent[] = [];
  const counted: string[] = [];
  events.on('presence-transition', (state, outcome) => counted.push(`${state} ${outcome}`));
  events.on('presence-write', (request, outcome) => counted.push(`${request} ${outcome}`));
  const tracker = new PresenceTracker({
    store,
    nodeId: 'n1',
    publish: (event) => {
      published.push(event);
      return publish(event);
    },
    clock: backgroundClock,
    logger: logger ?? capturingLogger().logger,
    events,
  });
  return { store, tracker, published, counted };
}

describe('PresenceTracker', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(1_000_000);
  });
  afterEach(() => vi.useRealTimers());

  it('sends the opens and closes of one turn as one call, in order, with the node, since and device', async () => {
    const { store, tracker } = setup();
    tracker.opened({ session: 's1', user: 'alice', device: 'phone' });
    tracker.opened({ session: 's2', user: 'bob' });
    tracker.closed('s1');
    tracker.closed('never-opened');
    expect(store.applied).toEqual([]);
    await vi.advanceTimersByTimeAsync(0);
    expect(store.applied.map(kinds)).toEqual([['put alice/s1', 'put bob/s2', 'remove alice/s1']]);
    expect(store.applied[0]![0]).toMatchObject({ entry: { node: 'n1', since: 1_000_000, device: 'phone' } });
    expect(store.applied[0]![1]).toEqual({ kind: 'put', user: 'bob', connection: 's2', entry: { node: 'n1', since: 1_000_000 } });
    await tracker.close();
  });

  it('puts each open connection once per refresh interval, and writes nothing else meanwhile', async () => {
    const { store, tracker } = setup();
    tracker.opened({ session: 's1', user: 'alice' });
    tracker.opened({ session: 's2', user: 'bob' });
    await vi.advanceTimersByTimeAsync(0);
    store.applied.length = 0;
    await vi.advanceTimersByTimeAsync(PRESENCE_TIMING.refreshIntervalMs - 1);
    expect(store.applied).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(store.applied.map(kinds)).toEqual([['put alice/s1', 'put bob/s2']]);
    await vi.advanceTimersByTimeAsync(4 * PRESENCE_TIMING.refreshIntervalMs);
    expect(store.applied).toHaveLength(5);
    // Every refresh puts the entry first written, since included.
    expect(new Set(store.applied.flat().map((op) => (op.kind === 'put' ? op.entry.since : -1)))).toEqual(new Set([1_000_000]));
    await tracker.close();
  });

  it('keeps the refresh under the entry TTL, so that a live node never lets an entry expire', () => {
    expect(PRESENCE_TIMING.refreshIntervalMs).toBeLessThanOrEqual(25_000);
    expect(PRESENCE_TIMING.entryTtlMs).toBeGreaterThan(2 * PRESENCE_TIMING.refreshIntervalMs);
    // A node killed right before a refresh: its entries expire a TTL after the last put, and the next sweep reports them.
    expect(PRESENCE_TIMING.entryTtlMs + PRESENCE_TIMING.sweepIntervalMs).toBeLessThan(60_000);
  });

  it('does not pile up refreshes while the previous one has no answer', async () => {
    const { store, tracker } = setup();
    tracker.opened({ session: 's1', user: 'alice' });
    await vi.advanceTimersByTimeAsync(0);
    let release: () => void = () => undefined;
    store.gate = new Promise((resolve) => (release = resolve));
    await vi.advanceTimersByTimeAsync(3 * PRESENCE_TIMING.refreshIntervalMs);
    expect(store.applied).toHaveLength(2);
    release();
    store.gate = undefined;
    await vi.advanceTimersByTimeAsync(PRESENCE_TIMING.refreshIntervalMs);
    expect(store.applied).toHaveLength(3);
    await tracker.close();
  });

  it('publishes each move reported by a write or a sweep once, and counts it', async () => {
    const { store, tracker, published, counted } = setup();
    store.nextMoves.push([move('alice', true)]);
    store.sweepMoves.push([move('bob', false)]);
    tracker.opened({ session: 's1', user: 'alice' });
    await vi.advanceTimersByTimeAsync(PRESENCE_TIMING.sweepIntervalMs);
    expect(published).toEqual([
      { user: 'alice', online: true, connections: 1, at: 1_000 },
      { user: 'bob', online: false, connections: 0, at: 1_000 },
    ]);
    expect(counted.filter((line) => line.includes('published'))).toEqual(['online published', 'offline published']);
    expect(store.sweeps).toBe(1);
    await tracker.close();
  });

  it('does not publish a move again when its publish failed', async () => {
    const { store, tracker, published, counted } = setup(() => Promise.reject(new Error('no confirm')));
    store.nextMoves.push([move('alice', true)]);
    tracker.opened({ session: 's1', user: 'alice' });
    await vi.advanceTimersByTimeAsync(3 * PRESENCE_TIMING.refreshIntervalMs);
    expect(published).toHaveLength(1);
    expect(counted).toContain('online failed');
    await tracker.close();
  });

  it('counts failed writes, warns once per outage and keeps going', async () => {
    const { logger, lines } = capturingLogger();
    const { store, tracker, counted } = setup(undefined, logger);
    store.failWith = new Error('Connection is closed.');
    tracker.opened({ session: 's1', user: 'alice' });
    await vi.advanceTimersByTimeAsync(PRESENCE_TIMING.refreshIntervalMs);
    expect(counted.filter((line) => line.endsWith('failed')).length).toBeGreaterThanOrEqual(3);
    expect(lines.filter((line) => line.level === 40)).toHaveLength(1);
    store.failWith = undefined;
    await vi.advanceTimersByTimeAsync(PRESENCE_TIMING.refreshIntervalMs);
    // The refresh after the outage puts the entry the first write could not.
    expect(store.applied.at(-1)!.map((op) => op.kind)).toEqual(['put']);
    expect(counted.at(-1)).toMatch(/ ok$/);
    await tracker.close();
  });

  it('on close sends what is queued, waits for its publishes, then writes nothing more', async () => {
    let confirm: () => void = () => undefined;
    const { store, tracker, published } = setup(() => new Promise((resolve) => (confirm = resolve)));
    tracker.opened({ session: 's1', user: 'alice' });
    await vi.advanceTimersByTimeAsync(0);
    store.nextMoves.push([move('alice', false)]);
    tracker.closed('s1');
    let closed = false;
    const closing = tracker.close().then(() => (closed = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(store.applied.map(kinds)).toEqual([['put alice/s1'], ['remove alice/s1']]);
    expect(published).toHaveLength(1);
    expect(closed).toBe(false);
    confirm();
    await closing;
    tracker.opened({ session: 's2', user: 'alice' });
    await vi.advanceTimersByTimeAsync(10 * PRESENCE_TIMING.refreshIntervalMs);
    expect(store.applied).toHaveLength(2);
    expect(store.sweeps).toBe(0);
  });
});
