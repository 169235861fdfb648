/**
 * `inbox-relay/client`: the client SDK for browsers (global WebSocket) and Node (`ws`, loaded on
 * demand, or passed as `webSocket`). Imports nothing but the protocol layer.
 */
export { InboxClient } from './inbox-client.js';
export type { MessageHandler } from './inbox-client.js';
export type { InboxClientOptions } from './options.js';
export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_DRAIN_TIMEOUT_MS } from './options.js';
export type { InboxMessage } from './message.js';
export type { ClientState } from './client-state.js';
export type {
  ClientStats,
  DeadLetterEvent,
  DisconnectEvent,
  GapEvent,
  InboxClientEvents,
  OpenEvent,
  ResetEvent,
  StateChange,
  StatusEvent,
} from './events.js';
export { ClientErrorCode, InboxClientError } from './errors.js';
export type { ClientErrorCodeValue, InboxClientErrorOptions } from './errors.js';
export { MemoryPositionStore, isPosition } from './position-store.js';
export type { Position, PositionStore } from './position-store.js';
export { DEFAULT_POSITION_KEY, LocalStoragePositionStore } from './local-storage-position-store.js';
export type { StorageLike } from './local-storage-position-store.js';
export { DEFAULT_MAX_REQUEUES, requeueUpTo } from './nack-policy.js';
export type { HandlerFailure, NackDecision, NackPolicy } from './nack-policy.js';
export { DEFAULT_TOKEN_REFRESH_LEAD_MS, jwtExpiryMs } from './token.js';
export type { TokenProvider, TokenReason, TokenRequest } from './token.js';
export { DEFAULT_INITIAL_DELAY_MS, DEFAULT_MAX_DELAY_MS, backoffDelayMs } from './backoff.js';
export type { BackoffOptions, RandomSource } from './backoff.js';
export { DEFAULT_ACK_BATCH, DEFAULT_ACK_DELAY_MS } from './ack-coalescer.js';
export type { Clock, TimerHandle } from './clock.js';
export type { WebSocketConstructorLike, WebSocketLike } from './transport.js';
