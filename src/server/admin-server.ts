import { createServer, type Server } from 'node:http';
import type { Logger } from '../log.js';

export interface AdminHandlers {
  ready(): boolean;
  /** Why the node is not ready, for the /readyz body. */
  notReadyReason(): string;
  metrics(): Promise<{ contentType: string; body: string }>;
  drain(): void;
}

/**
 * The admin listener: `/healthz` (the process answers), `/readyz` (it accepts connections: not
 * while draining or while a breaker is open), `/metrics` (Prometheus) and `POST /drain`.
 */
export function createAdminServer(handlers: AdminHandlers, logger: Logger): Server {
  return createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    const text = (status: number, body: string): void => {
      response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8' }).end(`${body}\n`);
    };
    if (path === '/healthz') return text(200, 'ok');
    if (path === '/readyz') return handlers.ready() ? text(200, 'ready') : text(503, `not ready: ${handlers.notReadyReason()}`);
    if (path === '/metrics') {
      handlers.metrics().then(
        ({ contentType, body }) => response.writeHead(200, { 'Content-Type': contentType }).end(body),
        () => text(500, 'metrics unavailable'),
      );
      return;
    }
    if (path === '/drain') {
      if (request.method !== 'POST') return text(405, 'use POST /drain');
      logger.info('drain requested on the admin port');
      text(202, 'draining');
      handlers.drain();
      return;
    }
    text(404, 'not found');
  });
}
