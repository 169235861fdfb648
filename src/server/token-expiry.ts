/**
 * When a connection's token runs out: one timer per connection, moved by each `refresh`.
 *
 * This module guarantees: `onExpired` runs once the latest applied expiry has passed (at once for
 * one already past), never earlier, also for expiries beyond the longest timer Node.js keeps (the
 * timer is re-armed); refreshes may be verified out of order (one may wait for a JWKS fetch), and
 * an earlier one never replaces the expiry a later one set; after `stop()` nothing runs.
 */
import type { BackgroundClock, TimerHandle } from '../delivery/background-clock.js';

/** The longest delay setTimeout keeps (about 24.8 days); a longer one fires at once. */
const MAX_TIMER_MS = 2_147_483_647;

export class TokenExpiry {
  private timer: TimerHandle | undefined;
  /** Refreshes begun, and the latest of them whose expiry was applied. */
  private begun = 0;
  private applied = 0;

  constructor(
    private readonly clock: BackgroundClock,
    private readonly onExpired: () => void,
  ) {}

  /** A refresh begins (its token is being verified): its ticket for `applyRefresh`. */
  beginRefresh(): number {
    this.begun += 1;
    return this.begun;
  }

  /** The refresh `ticket` verified: its expiry applies, unless a later refresh's already did. */
  applyRefresh(ticket: number, expiresAt: number | undefined): void {
    if (ticket < this.applied) return;
    this.applied = ticket;
    this.arm(expiresAt);
  }

  /** The token now in force expires at `expiresAt` (ms; undefined: never). */
  arm(expiresAt: number | undefined): void {
    this.stop();
    if (expiresAt === undefined) return;
    const delay = expiresAt - this.clock.now();
    if (delay <= 0) return this.onExpired();
    this.timer = this.clock.setTimeout(() => this.arm(expiresAt), Math.min(delay, MAX_TIMER_MS));
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }
}
