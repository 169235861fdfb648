/**
 * Keeps one user's RabbitMQ consumer on this node: starts it, notices it is lost, restarts it with
 * backoff while the stream wants it, and closes it.
 *
 * This module guarantees:
 * - at most one consumer is starting or running at a time, and each gets a fresh
 *   `ConsumerSession` (delivery tags and what it holds are valid only on its own channel);
 * - once `close()` is called no consumer starts again; one that was still starting closes
 *   itself when it comes up (so a slow broker cannot hold a drain), and `close()` waits for it
 *   at most `STARTING_WAIT_MS`;
 * - a lost consumer's callbacks are never called again (its session is marked dead).
 */
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import { backgroundClock, type Clock, type TimerHandle } from './background-clock.js';
import type { ConsumerCallbacks, ConsumerFactory, ConsumerHandle } from './consumer.js';
import { InFlightLedger } from './inflight-ledger.js';

/** One consumer's life on one channel. */
export class ConsumerSession {
  readonly ledger = new InFlightLedger();
  handle: ConsumerHandle | undefined;
  /** False once the consumer is lost or closed: its tags name nothing any more. */
  live = true;
  /** Set by the first delivery: RabbitMQ delivers only to the queue's active consumer (single active consumer). */
  active = false;
  /** Resolves with the handle once the consumer started (rejects when it could not start). */
  readonly ready: Promise<ConsumerHandle>;
  private resolveReady!: (handle: ConsumerHandle) => void;
  private rejectReady!: (error: unknown) => void;

  constructor(readonly id: number) {
    this.ready = new Promise<ConsumerHandle>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    // Nobody may wait on a start that fails; the supervisor reports the failure itself.
    this.ready.catch(() => undefined);
  }

  started(handle: ConsumerHandle): void {
    this.handle = handle;
    this.resolveReady(handle);
  }

  failed(error: unknown): void {
    this.live = false;
    this.rejectReady(error);
  }
}

export interface ConsumerSupervisorOptions {
  user: string;
  prefetch: number;
  consumers: ConsumerFactory;
  logger: Logger;
  clock?: Clock;
  /** Delay before restarting a lost consumer, by attempt (1, 2, ...). */
  restartDelayMs?: (attempt: number) => number;
  /** Wires a new consumer's deliveries and loss (called before it starts). */
  wire(session: ConsumerSession): ConsumerCallbacks;
  /** A consumer is up (a lost one was replaced, or the first one started). */
  onStarted(session: ConsumerSession): void;
}

/** How long `close()` waits for a consumer that is still starting. */
const STARTING_WAIT_MS = 2_000;

export class ConsumerSupervisor {
  private current: ConsumerSession | undefined;
  private starting: Promise<ConsumerSession> | undefined;
  private restartTimer: TimerHandle | undefined;
  private attempt = 0;
  private nextId = 0;
  private closed = false;
  private readonly clock: Clock;

  constructor(private readonly options: ConsumerSupervisorOptions) {
    this.clock = options.clock ?? backgroundClock;
  }

  /** The running consumer, if there is one. */
  get session(): ConsumerSession | undefined {
    return this.current;
  }

  get isStarting(): boolean {
    return this.starting !== undefined;
  }

  get restartScheduled(): boolean {
    return this.restartTimer !== undefined;
  }

  get restartAttempt(): number {
    return this.attempt;
  }

  /** The running consumer, started first if there is none. Rejects when it cannot start, or after `stop`. */
  async ensure(): Promise<ConsumerSession> {
    if (this.current) return this.current;
    if (this.closed) throw new Error('the consumer supervisor is closed');
    this.starting ??= this.start().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  /** The consumer was lost: start another after the next backoff step. */
  restartLater(): void {
    if (this.restartTimer || this.closed || this.current) return;
    this.attempt += 1;
    const delay = (this.options.restartDelayMs ?? defaultRestartDelay)(this.attempt);
    this.restartTimer = this.clock.setTimeout(() => {
      this.restartTimer = undefined;
      if (this.closed || this.current) return;
      background(
        this.ensure().then((session) => {
          // A start that lost its channel while starting ends without a consumer: try again.
          if (!session.live) this.restartLater();
        }),
        (error: unknown) => {
          this.options.logger.warn({ user: this.options.user, err: errorMessage(error) }, 'consumer restart failed');
          this.restartLater();
        },
      );
    }, delay);
  }

  /** Restarts a lost consumer now instead of at its next backoff step (a dependency came back). */
  retryNow(): void {
    if (this.current || this.closed || !this.restartTimer) return;
    this.cancelRestart();
    this.attempt = 0;
    this.restartLater();
  }

  /** No consumer starts from now on (one starting closes itself when it comes up). */
  stop(): void {
    this.closed = true;
    this.cancelRestart();
  }

  /** Stops the consumer for good; its unacked messages return to the queue in order. Idempotent. */
  async close(): Promise<void> {
    this.stop();
    // A consumer that starts later sees `closed` and closes itself (see start).
    if (this.starting) await settledWithin(this.starting, STARTING_WAIT_MS);
    const session = this.current;
    this.current = undefined;
    if (!session) return;
    session.live = false;
    await session.handle?.close();
  }

  private cancelRestart(): void {
    this.restartTimer?.cancel();
    this.restartTimer = undefined;
  }

  private async start(): Promise<ConsumerSession> {
    const session = new ConsumerSession((this.nextId += 1));
    const callbacks = this.options.wire(session);
    let handle: ConsumerHandle;
    try {
      handle = await this.options.consumers(this.options.user, this.options.prefetch, {
        onDelivery: (delivery) => {
          if (session.live) callbacks.onDelivery(delivery);
        },
        onLost: (reason) => {
          if (!session.live) return;
          session.live = false;
          if (this.current === session) this.current = undefined;
          callbacks.onLost(reason);
        },
      });
    } catch (error) {
      // A set-up given up on may still deliver: the dead session ignores it.
      session.failed(error);
      throw error;
    }
    session.started(handle);
    if (this.closed) {
      session.live = false;
      await handle.close();
      return session;
    }
    if (!session.live) return session;
    this.current = session;
    this.attempt = 0;
    this.options.onStarted(session);
    return session;
  }
}

function defaultRestartDelay(attempt: number): number {
  const capped = Math.min(5_000, 100 * 2 ** Math.min(attempt, 6));
  return capped / 2 + Math.random() * (capped / 2);
}
