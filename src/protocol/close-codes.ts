/**
 * WebSocket close codes of the inbox-relay v1 contract, and what a client should do on each.
 * This module does no I/O: the relay and the client SDK both import it.
 */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  policyViolation: 1008,
  frameTooLarge: 1009,
  internalError: 1011,
  restarting: 1012,
  overloaded: 1013,
  unauthenticated: 4001,
  forbidden: 4003,
  tokenExpired: 4008,
} as const;

export type CloseCodeValue = (typeof CloseCode)[keyof typeof CloseCode];

/** Codes after which a client reconnects with backoff and resumes from its last position. */
export const RECOVERABLE_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.goingAway,
  CloseCode.internalError,
  CloseCode.restarting,
  CloseCode.overloaded,
  // 1006 is never sent on the wire; runtimes report it when the connection dropped.
  1006,
]);

/** Codes after which a client must not reconnect without a change on its side. */
export const TERMINAL_CLOSE_CODES: ReadonlySet<number> = new Set([
  CloseCode.normal,
  CloseCode.policyViolation,
  CloseCode.frameTooLarge,
  CloseCode.forbidden,
]);

/** Codes after which a client needs a new token before reconnecting. */
export const TOKEN_CLOSE_CODES: ReadonlySet<number> = new Set([CloseCode.unauthenticated, CloseCode.tokenExpired]);

const RETRY_AFTER = /retry-after=(\d+)/;

/** The `retry-after=<ms>` hint a 1013 close reason carries, or undefined when it has none. */
export function parseRetryAfterMs(reason: string): number | undefined {
  const match = RETRY_AFTER.exec(reason);
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** The close reason for a 1013 refusal. WebSocket close reasons are limited to 123 bytes. */
export function retryAfterReason(ms: number, why?: string): string {
  const base = `retry-after=${Math.max(0, Math.round(ms))}`;
  return (why ? `${base} ${why}` : base).slice(0, 123);
}
