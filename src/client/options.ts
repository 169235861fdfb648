/**
 * Client options: every default as a named constant, validated once at construction. The
 * caller's object is never mutated or kept.
 */
import { MAX_DEVICE_LENGTH } from '../protocol/frame-types.js';
import { DEFAULT_ACK_BATCH, DEFAULT_ACK_DELAY_MS } from './ack-coalescer.js';
import { DEFAULT_INITIAL_DELAY_MS, DEFAULT_MAX_DELAY_MS, type RandomSource } from './backoff.js';
import { systemClock, type Clock } from './clock.js';
import { ClientErrorCode, InboxClientError } from './errors.js';
import { DEFAULT_MAX_REQUEUES, requeueUpTo, type NackPolicy } from './nack-policy.js';
import { MemoryPositionStore, type PositionStore } from './position-store.js';
import { DEFAULT_TOKEN_REFRESH_LEAD_MS, toTokenProvider, type TokenProvider } from './token.js';
import { streamUrl, type WebSocketConstructorLike } from './transport.js';

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
export const DEFAULT_DRAIN_TIMEOUT_MS = 5_000;

export interface InboxClientOptions {
  /** The relay: `ws(s)://host:port` (`/v1/stream` is appended), `http(s)://` likewise, or the full stream URL. */
  url: string;
  /** A JWT, or a provider called before every connection attempt and before the token expires. */
  token: string | TokenProvider;
  /** WebSocket class. Default: the global `WebSocket`, else the `ws` package, loaded on first connect. */
  webSocket?: WebSocketConstructorLike;
  /** Where the position is kept. Default: a {@link MemoryPositionStore} (survives reconnects, not restarts). */
  positionStore?: PositionStore;
  /** Delivery window to ask for (the relay caps it). Default: the relay's. */
  window?: number;
  /** A label for this client in the user's presence (`hello.device`): 1-64 characters. Default: none. */
  device?: string;
  /** Upper bound of the first reconnect delay. Default 500 ms. */
  reconnectInitialDelayMs?: number;
  /** Cap of the reconnect jitter window. Default 30 s. */
  reconnectMaxDelayMs?: number;
  /** Longest an ack for a processed message waits to be coalesced. Default 50 ms. */
  ackDelayMs?: number;
  /** Processed messages that force an ack (half the window forces one too). Default 100. */
  ackBatch?: number;
  /** What a failed message gets. Default: `requeueUpTo(3)`, then dead-letter. */
  nackPolicy?: NackPolicy;
  /** From opening a socket to `welcome`. Default 10 s. */
  connectTimeoutMs?: number;
  /** Refresh the token this long before it expires. Default 30 s. */
  tokenRefreshLeadMs?: number;
  /** How long `close()` waits for the message being handled. Default 5 s. */
  drainTimeoutMs?: number;
  /** For tests: time and timers. Default: the runtime's. */
  clock?: Clock;
  /** For tests: jitter source. Default `Math.random`. */
  random?: RandomSource;
}

export interface ResolvedOptions {
  readonly url: string;
  readonly tokenProvider: TokenProvider;
  /** True when `token` was a string: it cannot change, so a refusal is final. */
  readonly staticToken: boolean;
  readonly webSocket: WebSocketConstructorLike | undefined;
  readonly positionStore: PositionStore;
  readonly window: number | undefined;
  readonly device: string | undefined;
  readonly reconnectInitialDelayMs: number;
  readonly reconnectMaxDelayMs: number;
  readonly ackDelayMs: number;
  readonly ackBatch: number;
  readonly nackPolicy: NackPolicy;
  readonly connectTimeoutMs: number;
  readonly tokenRefreshLeadMs: number;
  readonly drainTimeoutMs: number;
  readonly clock: Clock;
  readonly random: RandomSource;
}

function invalid(name: string, message: string): InboxClientError {
  return new InboxClientError(ClientErrorCode.invalidOption, `${name}: ${message}`, { temporary: false });
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw invalid(name, 'must be a number >= 0');
  return value;
}

function positiveInteger(name: string, value: number | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || value < 1 || value > max) throw invalid(name, `must be an integer from 1 to ${max}`);
  return value;
}

function deviceLabel(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const length = typeof value === 'string' ? [...value].length : 0;
  if (length < 1 || length > MAX_DEVICE_LENGTH) throw invalid('device', `must be a string of 1 to ${MAX_DEVICE_LENGTH} characters`);
  return value;
}

/** Validates and fills in defaults. Throws `RELAY_ERR_INVALID_OPTION` naming the option. */
export function resolveOptions(options: InboxClientOptions): ResolvedOptions {
  if (typeof options.url !== 'string') throw invalid('url', 'is required');
  let url: string;
  try {
    url = streamUrl(options.url);
  } catch (cause) {
    if (cause instanceof InboxClientError) throw cause;
    throw invalid('url', `is not a valid URL (${options.url})`);
  }
  const token = options.token;
  if (typeof token !== 'function' && (typeof token !== 'string' || token.length === 0)) {
    throw invalid('token', 'must be a non-empty string or a function returning one');
  }
  const reconnectInitialDelayMs = nonNegative('reconnectInitialDelayMs', options.reconnectInitialDelayMs, DEFAULT_INITIAL_DELAY_MS);
  const reconnectMaxDelayMs = nonNegative('reconnectMaxDelayMs', options.reconnectMaxDelayMs, DEFAULT_MAX_DELAY_MS);
  if (reconnectMaxDelayMs < reconnectInitialDelayMs) throw invalid('reconnectMaxDelayMs', 'must be >= reconnectInitialDelayMs');
  return {
    url,
    tokenProvider: toTokenProvider(token),
    staticToken: typeof token === 'string',
    webSocket: options.webSocket,
    positionStore: options.positionStore ?? new MemoryPositionStore(),
    window: positiveInteger('window', options.window, 65_535),
    device: deviceLabel(options.device),
    reconnectInitialDelayMs,
    reconnectMaxDelayMs,
    ackDelayMs: nonNegative('ackDelayMs', options.ackDelayMs, DEFAULT_ACK_DELAY_MS),
    ackBatch: positiveInteger('ackBatch', options.ackBatch, 65_535) ?? DEFAULT_ACK_BATCH,
    nackPolicy: options.nackPolicy ?? requeueUpTo(DEFAULT_MAX_REQUEUES),
    connectTimeoutMs: nonNegative('connectTimeoutMs', options.connectTimeoutMs, DEFAULT_CONNECT_TIMEOUT_MS),
    tokenRefreshLeadMs: nonNegative('tokenRefreshLeadMs', options.tokenRefreshLeadMs, DEFAULT_TOKEN_REFRESH_LEAD_MS),
    drainTimeoutMs: nonNegative('drainTimeoutMs', options.drainTimeoutMs, DEFAULT_DRAIN_TIMEOUT_MS),
    clock: options.clock ?? systemClock,
    random: options.random ?? Math.random,
  };
}
