/**
 * Keeps an open connection's token fresh: asks the provider for a new token `leadMs` before the
 * current one expires and sends it in a `refresh` frame.
 *
 * Guarantees: at most one refresh timer at a time; a failed provider call is retried on the
 * same schedule (half the remaining lifetime, at least a second apart) until the relay closes
 * the connection with 4008; nothing runs after `stop()`.
 */
import type { Clock, TimerHandle } from './clock.js';
import { jwtExpiryMs, tokenRefreshDelayMs } from './token.js';

export interface TokenRefresherOptions {
  clock: Clock;
  leadMs: number;
  /** Gets a new token from the provider (rejects when it fails). */
  fetch: () => Promise<string>;
  /** Sends `refresh {token}`; false when the connection can no longer send. */
  send: (token: string) => boolean;
  onError: (error: unknown) => void;
}

export class TokenRefresher {
  #timer: TimerHandle | undefined;
  #stopped = false;

  constructor(private readonly options: TokenRefresherOptions) {}

  /** Schedules the refresh of `token`; tokens without `exp` are never refreshed. */
  start(token: string): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    if (this.#stopped) return;
    const expiresAt = jwtExpiryMs(token);
    if (expiresAt === undefined) return;
    const { clock, leadMs } = this.options;
    this.#timer = clock.setTimeout(
      () => {
        this.#timer = undefined;
        this.#refresh(token).catch((error: unknown) => this.options.onError(error));
      },
      tokenRefreshDelayMs(expiresAt, clock.now(), leadMs),
    );
  }

  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }

  async #refresh(current: string): Promise<void> {
    let next: string;
    try {
      next = await this.options.fetch();
    } catch (error) {
      if (this.#stopped) return;
      this.options.onError(error);
      this.start(current);
      return;
    }
    if (this.#stopped || !this.options.send(next)) return;
    this.start(next);
  }
}
