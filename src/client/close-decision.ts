/**
 * What the client does after a connection closed, by close code. Pure: the one place that maps
 * the contract's close-code table to client behaviour.
 */
import { CloseCode, TERMINAL_CLOSE_CODES, TOKEN_CLOSE_CODES, parseRetryAfterMs } from '../protocol/close-codes.js';
import type { TokenReason } from './token.js';

export type CloseAction =
  /** 1000: the relay ended the session; the client closes without error. */
  | { readonly kind: 'stop' }
  /** 1008, 1009, 4003: reconnecting cannot help; the client closes with an error. */
  | { readonly kind: 'fail' }
  /**
   * Everything else: reconnect with backoff and resume, with a fresh token for 4001/4008
   * (`tokenReason` `rejected`/`expired`: the relay refused the token, which the client counts
   * against its auth refusals; see auth-refusals.ts).
   */
  | { readonly kind: 'reconnect'; readonly tokenReason: TokenReason; readonly retryAfterMs?: number };

/** The fixed 4001 reason for a client that sent no `hello` in time: its token was never looked at. */
const HELLO_TIMEOUT_REASON = 'hello timeout';

/**
 * Maps a close to an action. Codes the contract does not name (1005, 1006, 1015, ...) are
 * treated as recoverable: giving up on an unknown code would stop delivery for good.
 */
export function decideAfterClose(code: number, reason: string): CloseAction {
  if (code === CloseCode.normal) return { kind: 'stop' };
  if (TERMINAL_CLOSE_CODES.has(code)) return { kind: 'fail' };
  if (TOKEN_CLOSE_CODES.has(code)) {
    // A hello that arrived late (a stalled page, a slow network) says nothing about the token.
    if (code === CloseCode.unauthenticated && reason === HELLO_TIMEOUT_REASON) return { kind: 'reconnect', tokenReason: 'connect' };
    return { kind: 'reconnect', tokenReason: code === CloseCode.tokenExpired ? 'expired' : 'rejected' };
  }
  if (code === CloseCode.overloaded) {
    const retryAfterMs = parseRetryAfterMs(reason);
    return retryAfterMs === undefined
      ? { kind: 'reconnect', tokenReason: 'connect' }
      : { kind: 'reconnect', tokenReason: 'connect', retryAfterMs };
  }
  return { kind: 'reconnect', tokenReason: 'connect' };
}
