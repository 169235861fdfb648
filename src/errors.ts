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
  /** A topic to publish to is not words of [A-Za-z0-9_-] separated by dots (at most 255 bytes). */
  invalidTopic: 'RELAY_ERR_INVALID_TOPIC',
  /** A pattern to follow is not words of [A-Za-z0-9_-], `*` or `#` separated by dots (at most 255 bytes). */
  invalidTopicPattern: 'RELAY_ERR_INVALID_TOPIC_PATTERN',
  /** The user's inbox queue does not exist (provision it first). */
  inboxMissing: 'RELAY_ERR_INBOX_MISSING',
  /** RabbitMQ's management HTTP API (needed to list bindings) is not configured or did not answer. */
  managementApi: 'RELAY_ERR_MANAGEMENT_API',
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
