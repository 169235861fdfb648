/**
 * The client's token across its connections: asks the provider for one before each connection
 * (saying why), remembers the one in use, and keeps it fresh while a connection is open.
 *
 * Guarantees: a token it hands out is a non-empty string (anything else from the provider fails
 * with `RELAY_ERR_TOKEN_PROVIDER`); at most one refresher runs, and it is bound to the connection
 * whose `send` it was given; nothing runs after `stopRefreshing()` until the next `startRefreshing()`.
 */
import type { Clock } from './clock.js';
import { ClientErrorCode, InboxClientError } from './errors.js';
import type { TokenProvider, TokenReason } from './token.js';
import { TokenRefresher } from './token-refresher.js';

export interface TokenSessionOptions {
  readonly provider: TokenProvider;
  readonly clock: Clock;
  /** Refresh this long before the token expires. */
  readonly refreshLeadMs: number;
  /** A refresh failed (the refresher retries on its own schedule). */
  readonly onRefreshError: (cause: unknown) => void;
}

export class TokenSession {
  readonly #options: TokenSessionOptions;
  #token: string | undefined;
  #refresher: TokenRefresher | undefined;
  /**
   * Why the next connection's token is asked for: `connect`, unless the last close said the
   * relay refused the token or it expired.
   */
  reason: TokenReason = 'connect';

  constructor(options: TokenSessionOptions) {
    this.#options = options;
  }

  /** Asks the provider for the next connection's token, with {@link reason}; rejects when it fails or returns none. */
  forConnection(): Promise<string> {
    return this.#fetch(this.reason);
  }

  /** Records `token` as the one the current connection authenticated with (the one refreshes replace). */
  use(token: string): void {
    this.#token = token;
  }

  /**
   * Starts refreshing the token in use, replacing any earlier refresher. `send` delivers a new
   * token to the connection it belongs to and returns false once that connection cannot take it,
   * which ends the refreshing.
   */
  startRefreshing(send: (token: string) => boolean): void {
    this.stopRefreshing();
    if (this.#token === undefined) return;
    const refresher = new TokenRefresher({
      clock: this.#options.clock,
      leadMs: this.#options.refreshLeadMs,
      fetch: () => this.#fetch('refresh'),
      send: (token) => {
        if (!send(token)) return false;
        this.#token = token;
        return true;
      },
      onError: this.#options.onRefreshError,
    });
    this.#refresher = refresher;
    refresher.start(this.#token);
  }

  /** Stops the refresher, if one runs (idempotent). */
  stopRefreshing(): void {
    this.#refresher?.stop();
    this.#refresher = undefined;
  }

  async #fetch(reason: TokenReason): Promise<string> {
    const token: unknown = await this.#options.provider({ reason });
    if (typeof token !== 'string' || token.length === 0) {
      throw new InboxClientError(ClientErrorCode.tokenProvider, 'the token provider returned no token');
    }
    return token;
  }
}
