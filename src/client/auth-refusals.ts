/**
 * How many times in a row the relay may refuse the client's token (close 4001 or 4008) before
 * the client stops reconnecting. A fixed token cannot change, so a refusal is final at once; a
 * token provider gets one more call, which covers a token that expired or was revoked while the
 * provider's next answer is a good one, without hammering the relay (and the provider's backend)
 * forever when it keeps handing out tokens the relay refuses. A `welcome` starts the count over.
 */

/** Refusals a token provider may get in a row before the client gives up: the first, plus one more chance. */
export const PROVIDER_AUTH_REFUSALS_ALLOWED = 1;

export class AuthRefusals {
  readonly #staticToken: boolean;
  #inARow = 0;

  /** `staticToken`: the client was given a string, not a provider. */
  constructor(staticToken: boolean) {
    this.#staticToken = staticToken;
  }

  /**
   * Counts one refusal. Returns why the client should give up (for its error message), or
   * undefined when it should ask for another token and reconnect.
   */
  refused(): string | undefined {
    this.#inARow += 1;
    if (this.#staticToken) return 'the token is a fixed string: pass a token provider to recover';
    if (this.#inARow > PROVIDER_AUTH_REFUSALS_ALLOWED) return "the token provider's next token was refused too";
    return undefined;
  }

  /** The relay accepted a token: the next refusal is the first again. */
  accepted(): void {
    this.#inARow = 0;
  }
}
