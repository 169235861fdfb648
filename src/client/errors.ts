/**
 * The one error type the client SDK raises or emits. `code` is stable and meant for branching;
 * the WebSocket close code, when there is one, is kept apart in `closeCode`.
 */

/** Stable codes of errors the client itself raises. Server `error` frames keep their own code. */
export const ClientErrorCode = {
  invalidOption: 'RELAY_ERR_INVALID_OPTION',
  noWebSocket: 'RELAY_ERR_NO_WEBSOCKET',
  tokenProvider: 'RELAY_ERR_TOKEN_PROVIDER',
  terminalClose: 'RELAY_ERR_TERMINAL_CLOSE',
  badFrame: 'RELAY_ERR_BAD_FRAME',
  sequenceGap: 'RELAY_ERR_SEQUENCE_GAP',
  handlerFailed: 'RELAY_ERR_HANDLER_FAILED',
  positionStore: 'RELAY_ERR_POSITION_STORE',
  clientClosed: 'RELAY_ERR_CLIENT_CLOSED',
  /** A bug in the client itself; the client closed. */
  internal: 'RELAY_ERR_CLIENT_INTERNAL',
} as const;

export type ClientErrorCodeValue = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

export interface InboxClientErrorOptions {
  cause?: unknown;
  /** The WebSocket close code that caused the error, if any. */
  closeCode?: number;
  /** True when the client recovers by itself (reconnecting, retrying); false when it gave up. */
  temporary?: boolean;
  /** True when the relay reported the error in an `error` frame. */
  fromServer?: boolean;
}

/** An error of the inbox-relay client. */
export class InboxClientError extends Error {
  override readonly name = 'InboxClientError';
  /** A `RELAY_ERR_*` code: one of {@link ClientErrorCode}, or the code of a server `error` frame. */
  readonly code: ClientErrorCodeValue | (string & {});
  readonly closeCode: number | undefined;
  readonly temporary: boolean;
  readonly fromServer: boolean;

  constructor(code: ClientErrorCodeValue | (string & {}), message: string, options: InboxClientErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.closeCode = options.closeCode;
    this.temporary = options.temporary ?? true;
    this.fromServer = options.fromServer ?? false;
  }
}
