/**
 * One error type for the relay: a stable string `code` callers branch on, an optional WebSocket
 * close code kept separate from it, whether retrying can help, and the underlying `cause`.
 */
export const ErrorCode = {
  config: 'RELAY_ERR_CONFIG',
  invalidUserId: 'RELAY_ERR_INVALID_USER_ID',
  unauthenticated: 'RELAY_ERR_UNAUTHENTICATED',
  tokenExpired: 'RELAY_ERR_TOKEN_EXPIRED',
  forbidden: 'RELAY_ERR_FORBIDDEN',
  publishNacked: 'RELAY_ERR_PUBLISH_NACKED',
  publishTimeout: 'RELAY_ERR_PUBLISH_TIMEOUT',
  brokerBlocked: 'RELAY_ERR_BROKER_BLOCKED',
  brokerUnavailable: 'RELAY_ERR_BROKER_UNAVAILABLE',
  storeUnavailable: 'RELAY_ERR_STORE_UNAVAILABLE',
  /** The state store answered something malformed (a short or long batch of seqs, say). */
  storeReply: 'RELAY_ERR_STORE_REPLY',
  invalidMessage: 'RELAY_ERR_INVALID_MESSAGE',
  closed: 'RELAY_ERR_CLOSED',
  topology: 'RELAY_ERR_TOPOLOGY',
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export interface RelayErrorOptions {
  cause?: unknown;
  /** Retrying the same operation later can succeed (broker or store down, inbox full). */
  retryable?: boolean;
  /** The WebSocket close code to use when this error ends a connection. */
  closeCode?: number;
}

export class RelayError extends Error {
  readonly code: ErrorCodeValue;
  readonly retryable: boolean;
  readonly closeCode: number | undefined;

  constructor(code: ErrorCodeValue, message: string, options: RelayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RelayError';
    this.code = code;
    this.retryable = options.retryable ?? false;
    this.closeCode = options.closeCode;
  }
}

export function isRelayError(error: unknown, code?: ErrorCodeValue): error is RelayError {
  return error instanceof RelayError && (code === undefined || error.code === code);
}

/** The message of anything thrown, for logs (never includes tokens or message bodies). */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
