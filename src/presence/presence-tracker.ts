/**
 * One node's side of presence: the entries of the connections open here, kept alive in the
 * presence store, and the moves between online and offline the store reports to this node,
 * published as events (`inbox.presence`).
 *
 * This module guarantees:
 * - Writes are per connection, never per message: a put when a connection is welcomed, a remove
 *   when it closes, and one put per open connection every `refreshIntervalMs` (20 s), all of one
 *   event-loop turn sent as one script call. An entry lives `entryTtlMs` (50 s) after its last
 *   put, so the entries of a node that died expire within 50 s, and the sweep every
 *   `sweepIntervalMs` (5 s), run by every node, reports those users offline within 55 s.
 * - Each move the store reports to this node is published once, at most: a publish that fails
 *   is counted and logged, not tried again.
 * - Best-effort: a failed write or sweep is counted and logged (one warning per outage), never
 *   thrown, and nothing in the delivery path waits for presence. A put that failed is made good
 *   by the next refresh; a remove that failed, by the entry's expiry.
 * - `close()` (idempotent) stops the timers, sends what is queued, and resolves once those
 *   writes and the publishes they caused settled; it never closes the store it was handed.
 */
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import type { BackgroundClock, TimerHandle } from '../delivery/background-clock.js';
import type { PresenceEntry, PresenceOperation, PresenceStore, PresenceTransition } from './presence-store.js';

export interface PresenceTiming {
  /** How often each open connection's entry is put again. */
  refreshIntervalMs: number;
  /** How long an entry lives after its last put. */
  entryTtlMs: number;
  /** How often this node drops expired entries (anyone's) and reports whom that took offline. */
  sweepIntervalMs: number;
  /** Most users one sweep looks at; a full sweep goes on at once. */
  sweepLimit: number;
  /** Most operations in one script call. */
  maxBatchOps: number;
}

/** Refresh 20 s, TTL 50 s, sweep 5 s: a dead node's users are offline within 55 s. */
export const PRESENCE_TIMING: PresenceTiming = {
  refreshIntervalMs: 20_000,
  entryTtlMs: 50_000,
  sweepIntervalMs: 5_000,
  sweepLimit: 500,
  maxBatchOps: 500,
};

/** A welcomed connection, as presence sees it. */
export interface PresenceConnection {
  /** The connection's session id (its `welcome.session`): the entry's key. */
  session: string;
  user: string;
  device?: string | undefined;
}

/** What a connection tells presence: welcomed, and closed after it was. */
export interface PresenceSink {
  opened(connection: PresenceConnection): void;
  closed(session: string): void;
}

/** The body of an `inbox.presence` event (routing key: the user id). */
export interface PresenceEvent {
  user: string;
  online: boolean;
  connections: number;
  /** When the move happened, ms since the epoch (Redis's clock). */
  at: number;
}

export function presenceEvent(transition: PresenceTransition): PresenceEvent {
  return { user: transition.user, online: transition.online, connections: transition.connections, at: transition.at };
}

export interface PresenceTrackerOptions {
  store: PresenceStore;
  /** This node's id (NODE_ID), written in each entry. */
  nodeId: string;
  /** Publishes one move to `inbox.presence`; resolves once RabbitMQ confirmed it. */
  publish: (event: PresenceEvent) => Promise<void>;
  clock: BackgroundClock;
  logger: Logger;
  events?: RelayEvents;
  timing?: Partial<PresenceTiming>;
}

export class PresenceTracker implements PresenceSink {
  private readonly timing: PresenceTiming;
  private readonly open = new Map<string, { user: string; entry: PresenceEntry }>();
  private queue: PresenceOperation[] = [];
  private flushTimer: TimerHandle | undefined;
  private readonly timers: TimerHandle[];
  /** Writes, sweeps and publishes not settled yet (close waits for them). */
  private readonly pending = new Set<Promise<void>>();
  private refreshing: Promise<void> | undefined;
  private sweeping = false;
  private failing = false;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: PresenceTrackerOptions) {
    this.timing = { ...PRESENCE_TIMING, ...options.timing };
    const { clock } = options;
    this.timers = [
      clock.setInterval(() => this.refresh(), this.timing.refreshIntervalMs),
      clock.setInterval(() => this.sweep(), this.timing.sweepIntervalMs),
    ];
  }

  opened(connection: PresenceConnection): void {
    if (this.closing) return;
    const entry: PresenceEntry = {
      node: this.options.nodeId,
      since: this.options.clock.now(),
      ...(connection.device === undefined ? {} : { device: connection.device }),
    };
    this.open.set(connection.session, { user: connection.user, entry });
    this.enqueue({ kind: 'put', user: connection.user, connection: connection.session, entry });
  }

  closed(session: string): void {
    const known = this.open.get(session);
    if (!known) return;
    this.open.delete(session);
    // After close nothing is sent: the entry expires (the relay closes presence after its connections).
    if (this.closing) return;
    this.enqueue({ kind: 'remove', user: known.user, connection: session });
  }

  /** Stops the timers and sends what is queued; resolves once every write and publish settled. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const timer of this.timers) timer.cancel();
      this.flush();
      while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
    })();
    return this.closing;
  }

  private enqueue(operation: PresenceOperation): void {
    this.queue.push(operation);
    // Every operation of this turn goes in one call, at the end of the turn.
    this.flushTimer ??= this.options.clock.setTimeout(() => this.flush(), 0);
  }

  private flush(): void {
    this.flushTimer?.cancel();
    this.flushTimer = undefined;
    const queue = this.queue;
    this.queue = [];
    // Each write counts and logs its own failure (write never rejects).
    background(this.send(queue), () => undefined);
  }

  /** Sends `operations` in calls of at most maxBatchOps; resolves once every call settled. */
  private send(operations: readonly PresenceOperation[]): Promise<void> {
    const writes: Promise<void>[] = [];
    for (let start = 0; start < operations.length; start += this.timing.maxBatchOps) {
      const write = this.write(operations.slice(start, start + this.timing.maxBatchOps));
      this.track(write);
      writes.push(write);
    }
    return Promise.all(writes).then(() => undefined);
  }

  private async write(operations: PresenceOperation[]): Promise<void> {
    let moves: PresenceTransition[];
    try {
      moves = await this.options.store.apply(operations, this.timing.entryTtlMs);
    } catch (error) {
      this.failed('apply', error);
      return;
    }
    this.succeeded('apply');
    this.announce(moves);
  }

  /**
   * Puts every open connection again, unless the previous refresh is still on its way (Redis is
   * slow or down: piling refreshes up would not help). A connection that closes meanwhile has
   * its remove sent after this put, so it is not brought back.
   */
  private refresh(): void {
    if (this.refreshing || this.open.size === 0) return;
    const puts: PresenceOperation[] = [];
    for (const [session, { user, entry }] of this.open) puts.push({ kind: 'put', user, connection: session, entry });
    this.refreshing = this.send(puts).finally(() => {
      this.refreshing = undefined;
    });
  }

  private sweep(): void {
    if (this.sweeping || this.closing) return;
    this.sweeping = true;
    this.track(
      (async () => {
        try {
          for (;;) {
            const moves = await this.options.store.sweep(this.timing.sweepLimit);
            this.succeeded('sweep');
            this.announce(moves);
            // A full sweep may have left more due: go on, unless closing.
            if (moves.length < this.timing.sweepLimit || this.closing) break;
          }
        } catch (error) {
          this.failed('sweep', error);
        } finally {
          this.sweeping = false;
        }
      })(),
    );
  }

  private announce(moves: readonly PresenceTransition[]): void {
    for (const move of moves) {
      const state = move.online ? 'online' : 'offline';
      this.track(
        this.options.publish(presenceEvent(move)).then(
          () => {
            this.options.events?.emit('presence-transition', state, 'published');
          },
          (error: unknown) => {
            this.options.events?.emit('presence-transition', state, 'failed');
            this.options.logger.warn({ user: move.user, online: move.online, err: errorMessage(error) }, 'presence event not published');
          },
        ),
      );
    }
  }

  /** Counted, and one warning per run of failures (a Redis outage would log one per write otherwise). */
  private failed(request: 'apply' | 'sweep', error: unknown): void {
    this.options.events?.emit('presence-write', request, 'failed');
    const log = this.options.logger;
    if (this.failing) log.debug({ request, err: errorMessage(error) }, 'presence write failed');
    else log.warn({ request, err: errorMessage(error) }, 'presence write failed; presence is best-effort, delivery goes on');
    this.failing = true;
  }

  private succeeded(request: 'apply' | 'sweep'): void {
    this.options.events?.emit('presence-write', request, 'ok');
    if (this.failing) this.options.logger.info('presence writes work again');
    this.failing = false;
  }

  private track(work: Promise<void>): void {
    this.pending.add(work);
    work.then(
      () => this.pending.delete(work),
      () => this.pending.delete(work),
    );
  }
}
