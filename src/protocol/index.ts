/**
 * The protocol layer (`inbox-relay/protocol`): frames, codec, close codes and validation. No I/O.
 * The client SDK imports the zod-free modules it needs directly (frame-types, server-frames,
 * close-codes), never this file: `decodeClientFrame` brings in zod.
 */
export { decodeClientFrame } from './frames.js';
export { SUBPROTOCOL, STREAM_PATH, MAX_DEVICE_LENGTH, encodeFrame, ErrorFrameCode } from './frame-types.js';
export { decodeServerFrame } from './server-frames.js';
export type * from './frame-types.js';
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
