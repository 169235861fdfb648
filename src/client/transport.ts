/**
 * The WebSocket the client talks through. Browsers (and Node 22+) provide a global `WebSocket`;
 * on Node 20 the `ws` package is loaded lazily, through a specifier bundlers cannot see, so a
 * browser bundle never contains it. Callers may pass any constructor with the browser's API.
 */
import { STREAM_PATH } from '../protocol/frame-types.js';
import { ClientErrorCode, InboxClientError } from './errors.js';

/** The subset of the browser WebSocket API the client uses (also implemented by `ws`). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  addEventListener(type: 'open', listener: () => void): void;
  addEventListener(type: 'error', listener: () => void): void;
  addEventListener(type: 'message', listener: (event: { data: unknown }) => void): void;
  addEventListener(type: 'close', listener: (event: { code: number; reason: string }) => void): void;
}

/** A WebSocket class: the browser's, `ws`'s, or a test double. */
export type WebSocketConstructorLike = new (url: string, protocols: string[]) => WebSocketLike;

/** `readyState` of an open socket (the same value in every implementation). */
export const OPEN_STATE = 1;

interface PingObservable {
  on(event: 'ping', listener: () => void): unknown;
}

/**
 * Subscribes to protocol-level pings when the runtime exposes them (`ws` does, browsers do not).
 * Returns whether it could; without them the client sends application-level pings instead.
 */
export function observeProtocolPings(socket: WebSocketLike, listener: () => void): boolean {
  const candidate = socket as Partial<PingObservable>;
  if (typeof candidate.on !== 'function') return false;
  candidate.on.call(socket, 'ping', listener);
  return true;
}

// A variable, not a literal: bundlers leave `import(name)` alone, so `ws` stays out of browser builds.
const NODE_WEBSOCKET_MODULE = 'ws';

interface WsModule {
  WebSocket?: WebSocketConstructorLike;
  default?: WebSocketConstructorLike;
}

/**
 * Picks the WebSocket class: the one given, else the global one, else `ws` loaded on demand.
 * Rejects with `RELAY_ERR_NO_WEBSOCKET` when none is available.
 */
export async function resolveWebSocket(explicit?: WebSocketConstructorLike): Promise<WebSocketConstructorLike> {
  if (explicit) return explicit;
  const global = (globalThis as { WebSocket?: unknown }).WebSocket;
  if (typeof global === 'function') return global as WebSocketConstructorLike;
  try {
    const mod = (await import(NODE_WEBSOCKET_MODULE)) as WsModule;
    const found = mod.WebSocket ?? mod.default;
    if (found) return found;
  } catch (cause) {
    throw new InboxClientError(ClientErrorCode.noWebSocket, 'no global WebSocket and the ws package is not installed', {
      cause,
    });
  }
  throw new InboxClientError(ClientErrorCode.noWebSocket, 'the ws package exports no WebSocket class');
}

/**
 * The stream endpoint for a relay address: `http(s)` becomes `ws(s)`, and a bare origin gets
 * `/v1/stream` appended. A URL that already names a path is used as given.
 */
export function streamUrl(address: string): string {
  const url = new URL(address);
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new InboxClientError(ClientErrorCode.invalidOption, `url: unsupported scheme ${url.protocol}`);
  }
  if (url.pathname === '' || url.pathname === '/') url.pathname = STREAM_PATH;
  return url.toString();
}
