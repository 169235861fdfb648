/**
 * Checks of an HTTP upgrade request before the WebSocket handshake: path, subprotocol, origin,
 * the failed authentications of its address (before any token is verified) and, when the
 * Authorization header carries a token, the token (asynchronous: its key may have to be fetched,
 * token-keys.ts). Refusals are plain HTTP responses, so a client can tell them apart from a close
 * code.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { RelayConfig } from '../config.js';
import { STREAM_PATH, SUBPROTOCOL } from '../protocol/frames.js';
import { OPEN_AUTH_GATE, type AuthGate } from '../overload/auth-failures.js';
import { verifyToken, type Identity } from './auth.js';
import type { TokenKeys } from './token-keys.js';

export type UpgradeCheck =
  { ok: true; identity: Identity | undefined } | { ok: false; status: number; message: string; retryAfterMs?: number };

function offeredProtocols(request: IncomingMessage): string[] {
  const header = request.headers['sec-websocket-protocol'];
  return typeof header === 'string' ? header.split(',').map((p) => p.trim()) : [];
}

/**
 * Whether a request's `Origin` may upgrade. Browsers always send `Origin` on a WebSocket and a page
 * cannot change it, so only pages of the allowed origins (any, with `*`) can connect from a
 * browser: a page on another site cannot use the relay from its visitors' browsers, with a token
 * it came by or with cookies a proxy in front of the relay would accept. A request without
 * `Origin` does not come from a browser, and such a client can send any header it likes, so
 * refusing it would protect nothing.
 */
export function originAllowed(origin: string | undefined, allowed: RelayConfig['allowedOrigins']): boolean {
  return origin === undefined || allowed === '*' || allowed.includes(origin);
}

export async function checkUpgrade(
  request: IncomingMessage,
  config: RelayConfig,
  tokenKeys: TokenKeys,
  authGate: AuthGate = OPEN_AUTH_GATE,
): Promise<UpgradeCheck> {
  const path = (request.url ?? '').split('?')[0];
  if (path !== STREAM_PATH) return { ok: false, status: 404, message: `not found: the stream is at ${STREAM_PATH}` };
  if (!offeredProtocols(request).includes(SUBPROTOCOL)) {
    return { ok: false, status: 400, message: `the WebSocket subprotocol ${SUBPROTOCOL} is required` };
  }
  if (!originAllowed(request.headers.origin, config.allowedOrigins)) return { ok: false, status: 403, message: 'origin not allowed' };
  // Every upgrade from an address out of failures is refused, with or without a header token:
  // the hello's token would be verified next.
  const retryAfterMs = authGate.retryAfterMs();
  if (retryAfterMs > 0) return { ok: false, status: 429, message: 'too many failed authentications from this address', retryAfterMs };
  const authorization = request.headers.authorization;
  if (authorization === undefined) return { ok: true, identity: undefined };
  const match = /^Bearer\s+(\S+)$/i.exec(authorization);
  if (!match?.[1]) {
    authGate.failed();
    return { ok: false, status: 401, message: 'Authorization header must be: Bearer <token>' };
  }
  const result = await verifyToken(match[1], tokenKeys);
  if (!result.ok) {
    authGate.failed();
    return { ok: false, status: result.failure === 'forbidden' ? 403 : 401, message: result.reason };
  }
  return { ok: true, identity: result.identity };
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  503: 'Service Unavailable',
};

/**
 * Answers an upgrade request with an HTTP error and closes the socket once the answer is written:
 * the socket is destroyed then, not left half-open for a client that never closes its side.
 */
export function refuseUpgrade(socket: Duplex, status: number, message: string, headers: Record<string, string> = {}): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = `${message}\n`;
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Connection: close',
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
  ];
  socket.end(`${lines.join('\r\n')}\r\n\r\n${body}`, () => socket.destroy());
}
