/**
 * Notices a dead connection. Every inbound frame (and every WebSocket ping, where the runtime
 * shows them) counts as a sign of life. Where the runtime cannot see WebSocket pings, an
 * application-level `ping` is sent every heartbeat so a healthy relay always has something to
 * answer.
 *
 * Guarantee: `onDead` fires once, no later than two heartbeats (plus timer latency) after the
 * last sign of life, and never after `stop()`.
 */
import type { Clock, TimerHandle } from './clock.js';

export interface LivenessOptions {
  /** The relay's heartbeat (`welcome.heartbeatMs`); 0 disables the monitor. */
  heartbeatMs: number;
  clock: Clock;
  /** Sends an application-level ping; omitted when the runtime sees the relay's WebSocket pings. */
  sendPing?: () => void;
  onDead: () => void;
}

/** Silence longer than this many heartbeats means the connection is dead. */
export const DEAD_AFTER_HEARTBEATS = 2;

export class LivenessMonitor {
  #lastSeen = 0;
  #deadline: TimerHandle | undefined;
  #pinger: TimerHandle | undefined;
  #running = false;

  constructor(private readonly options: LivenessOptions) {}

  start(): void {
    if (this.#running || this.options.heartbeatMs <= 0) return;
    this.#running = true;
    this.#lastSeen = this.options.clock.now();
    this.#armDeadline(DEAD_AFTER_HEARTBEATS * this.options.heartbeatMs);
    if (this.options.sendPing) this.#schedulePing();
  }

  /** Records a sign of life. Cheap: it does not touch timers. */
  seen(): void {
    this.#lastSeen = this.options.clock.now();
  }

  stop(): void {
    this.#running = false;
    this.#deadline?.cancel();
    this.#pinger?.cancel();
    this.#deadline = undefined;
    this.#pinger = undefined;
  }

  #armDeadline(delayMs: number): void {
    this.#deadline = this.options.clock.setTimeout(() => this.#check(), delayMs);
  }

  #check(): void {
    if (!this.#running) return;
    const limit = DEAD_AFTER_HEARTBEATS * this.options.heartbeatMs;
    const silent = this.options.clock.now() - this.#lastSeen;
    if (silent >= limit) {
      this.stop();
      this.options.onDead();
    } else {
      this.#armDeadline(limit - silent);
    }
  }

  #schedulePing(): void {
    this.#pinger = this.options.clock.setTimeout(() => {
      if (!this.#running) return;
      this.options.sendPing?.();
      this.#schedulePing();
    }, this.options.heartbeatMs);
  }
}
