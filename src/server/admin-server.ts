/**
 * The admin listener: `/healthz` (the process answers), `/readyz` (it accepts connections: not
 * while draining or while a breaker is open), `/metrics` (Prometheus) and `POST /drain`.
 *
 * With an admin token configured, `POST /drain`, and `/metrics` when asked to, answer 401 unless
 * the request carries `Authorization: Bearer <token>`; the comparison takes the same time
 * whatever the candidate. `/healthz` and `/readyz` stay open: probes (kubelet, load balancer)
 * carry no credentials, and they reveal nothing but up/ready.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Logger } from '../log.js';

export interface AdminHandlers {
  ready(): boolean;
  /** Why the node is not ready, for the /readyz body. */
  notReadyReason(): string;
  metrics(): Promise<{ contentType: string; body: string }>;
  drain(): void;
}

/** Who may use the guarded endpoints. */
export interface AdminAccess {
  /** ADMIN_TOKEN; undefined: every endpoint is open (the listener's address is then the only guard). */
  token: string | undefined;
  /** /metrics needs the token too. */
  metricsRequireToken: boolean;
}

export type AdminRoute = 'healthz' | 'readyz' | 'metrics' | 'drain' | 'unauthorized' | 'method-not-allowed' | 'not-found';

const digest = (value: string): Buffer => createHash('sha256').update(value).digest();

/**
 * Whether an Authorization header carries the expected bearer token. Both sides are hashed
 * first, so the comparison is over equal lengths and its time says nothing about the token.
 */
export function bearerMatches(authorization: string | undefined, expectedDigest: Buffer): boolean {
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization ?? '');
  const candidate = digest(match?.[1] ?? '');
  return timingSafeEqual(candidate, expectedDigest) && match !== null;
}

/** Which answer a request gets; pure, so the access rules are tested without a socket. */
export function routeAdminRequest(
  request: { method: string | undefined; url: string | undefined; authorization: string | undefined },
  access: { tokenDigest: Buffer | undefined; metricsRequireToken: boolean },
): AdminRoute {
  const path = (request.url ?? '').split('?')[0];
  const authorized = (): boolean => access.tokenDigest === undefined || bearerMatches(request.authorization, access.tokenDigest);
  if (path === '/healthz') return 'healthz';
  if (path === '/readyz') return 'readyz';
  if (path === '/metrics') return !access.metricsRequireToken || authorized() ? 'metrics' : 'unauthorized';
  if (path === '/drain') {
    if (request.method !== 'POST') return 'method-not-allowed';
    return authorized() ? 'drain' : 'unauthorized';
  }
  return 'not-found';
}

function remoteOf(request: IncomingMessage): string | undefined {
  return request.socket.remoteAddress;
}

export function createAdminServer(handlers: AdminHandlers, logger: Logger, access: AdminAccess): Server {
  const rules = {
    tokenDigest: access.token === undefined ? undefined : digest(access.token),
    metricsRequireToken: access.metricsRequireToken,
  };
  return createServer((request, response) => {
    const text = (status: number, body: string, headers: Record<string, string> = {}): void => {
      response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers }).end(`${body}\n`);
    };
    const route = routeAdminRequest({ method: request.method, url: request.url, authorization: request.headers.authorization }, rules);
    switch (route) {
      case 'healthz':
        return text(200, 'ok');
      case 'readyz':
        return handlers.ready() ? text(200, 'ready') : text(503, `not ready: ${handlers.notReadyReason()}`);
      case 'metrics':
        handlers.metrics().then(
          ({ contentType, body }) => response.writeHead(200, { 'Content-Type': contentType }).end(body),
          () => text(500, 'metrics unavailable'),
        );
        return;
      case 'drain':
        logger.info({ remote: remoteOf(request) }, 'drain requested on the admin port');
        text(202, 'draining');
        handlers.drain();
        return;
      case 'unauthorized':
        logger.warn({ path: (request.url ?? '').split('?')[0], remote: remoteOf(request) }, 'admin request refused: no valid admin token');
        return text(401, 'unauthorized: send Authorization: Bearer <ADMIN_TOKEN>', {
          'WWW-Authenticate': 'Bearer realm="inbox-relay admin"',
        });
      case 'method-not-allowed':
        return text(405, 'use POST /drain');
      case 'not-found':
        return text(404, 'not found');
    }
  });
}
