/** The protocol layer: frames, codec, close codes and validation. No I/O. */
export { SUBPROTOCOL, STREAM_PATH, decodeClientFrame, decodeServerFrame, encodeFrame, ErrorFrameCode } from './frames.js';
export type {
  AckFrame,
  ClientFrame,
  DecodeResult,
  ErrorFrame,
  HelloFrame,
  MsgFrame,
  NackFrame,
  PingFrame,
  PongFrame,
  RefreshFrame,
  ResetFrame,
  ServerFrame,
  StatusFrame,
  WelcomeFrame,
} from './frames.js';
export {
  CloseCode,
  RECOVERABLE_CLOSE_CODES,
  TERMINAL_CLOSE_CODES,
  TOKEN_CLOSE_CODES,
  parseRetryAfterMs,
  retryAfterReason,
} from './close-codes.js';
export type { CloseCodeValue } from './close-codes.js';
export { RESERVED_USER_IDS, USER_ID_PATTERN, isValidUserId } from './user-id.js';
