/**
 * The HTTP publish API, for producers that cannot speak AMQP: `POST /v1/publish` on a listener of
 * its own (PUBLISH_PORT, PUBLISH_HOST), documented in docs/publish-api.openapi.yaml; and
 * `GET /v1/presence/<user>`, the user's presence (src/presence/), behind the same token.
 *
 * This module guarantees:
 * - 202 only once RabbitMQ confirmed every message of the request (publisher confirms, through
 *   the relay's producer); any other answer names, per message, whether it was accepted, and the
 *   messageId to retry with (the idempotency key: a retry with the same id is delivered once);
 * - a request is refused before any message is published when it is not authorized (401, the
 *   token compared in constant time, before the body is read), not `POST /v1/publish` (404, 405),
 *   not JSON (415), larger than PUBLISH_MAX_BODY_BYTES (413, before or while it is read) or
 *   invalid (400, with the first problem and where it is), and while publishing cannot succeed:
 *   RabbitMQ blocks publishers, the broker breaker is open, the node drains, or the requests in
 *   flight hold too many bytes (503 with Retry-After);
 * - 429 (a full inbox) and 503 carry `Retry-After` in seconds;
 * - logs never hold a token or a message body.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PublishApiConfig } from '../config.js';
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import { bearerMatches } from '../server/admin-server.js';
import { answerFor, answerForAll, failureOf, RETRY_AFTER_S, type PublishFailure, type RequestRefusal } from './publish-outcome.js';
import { parsePublishRequest, type PublishMessage } from './publish-request.js';
import type { UserPresence } from '../presence/presence-store.js';
import { isValidUserId } from '../protocol/user-id.js';

export const PUBLISH_PATH = '/v1/publish';
/** `GET /v1/presence/<user>`: the user's presence. */
export const PRESENCE_PATH = '/v1/presence/';
/** Bytes of request bodies held at once across all requests; past it new requests get 503. */
const MAX_INFLIGHT_BYTES = 64 * 1024 * 1024;
/** A request must be complete within this long (slow senders hold a socket and a buffer). */
const REQUEST_TIMEOUT_MS = 30_000;
const HEADERS_TIMEOUT_MS = 10_000;

/** Why publishing cannot be tried now; the request is answered 503 without publishing. */
export interface Unavailable {
  error: 'broker-blocked' | 'unavailable' | 'draining';
  message: string;
}

export interface PublishApiOptions {
  config: PublishApiConfig;
  /** MAX_MESSAGE_BYTES: a message the relay would dead-letter as too-large is refused (413). */
  maxMessageBytes: number;
  /** Publishes one message; resolves once RabbitMQ confirmed it, rejects with the producer library's RelayError. */
  publish(message: PublishMessage): Promise<void>;
  /** Why no publish can succeed now (a resource alarm, the broker breaker open), if so. */
  unavailable(): Unavailable | undefined;
  /** The user's presence; none: presence is off (no Redis) and `GET /v1/presence/<user>` answers 503. */
  presence?: ((user: string) => Promise<UserPresence>) | undefined;
  /** How long `close` waits for requests in flight (their confirms) before cutting their sockets. */
  closeWaitMs: number;
  events?: RelayEvents | undefined;
  logger: Logger;
}

export type PublishRoute = 'publish' | 'presence' | 'not-found' | 'method-not-allowed' | 'unauthorized' | 'unsupported-media-type';

const digest = (value: string): Buffer => createHash('sha256').update(value).digest();

/** Which answer a request gets before its body is read; pure, so the rules are tested without a socket. */
export function routePublishRequest(
  request: { method: string | undefined; url: string | undefined; authorization: string | undefined; contentType: string | undefined },
  tokenDigest: Buffer,
): PublishRoute {
  const path = (request.url ?? '').split('?')[0] ?? '';
  if (path.startsWith(PRESENCE_PATH) && path.length > PRESENCE_PATH.length) {
    if (request.method !== 'GET') return 'method-not-allowed';
    return bearerMatches(request.authorization, tokenDigest) ? 'presence' : 'unauthorized';
  }
  if (path !== PUBLISH_PATH) return 'not-found';
  if (request.method !== 'POST') return 'method-not-allowed';
  if (!bearerMatches(request.authorization, tokenDigest)) return 'unauthorized';
  const type = (request.contentType ?? '').split(';')[0]?.trim().toLowerCase();
  return type === 'application/json' ? 'publish' : 'unsupported-media-type';
}

type ResultStatus = 'accepted' | PublishFailure;

/** The client closed its connection before its body was complete. */
class RequestClosedError extends Error {
  constructor() {
    super('publish request closed before its body was complete');
  }
}

export class PublishApi {
  private readonly server: Server;
  private readonly tokenDigest: Buffer;
  private inflightBytes = 0;
  private readonly inflight = new Set<Promise<void>>();
  private closing: Promise<void> | undefined;

  constructor(private readonly options: PublishApiOptions) {
    this.tokenDigest = digest(options.config.token);
    this.server = createServer((request, response) => {
      const handled = this.handle(request, response).catch((error: unknown) => {
        // A client that went away mid-body is routine; anything else is a defect.
        if (error instanceof RequestClosedError) options.logger.debug({ remote: request.socket.remoteAddress }, error.message);
        else options.logger.error({ err: errorMessage(error) }, 'publish request failed');
        if (!response.headersSent && !response.destroyed) this.refuse(response, 500, 'unavailable', 'internal error');
      });
      this.inflight.add(handled);
      background(
        handled.finally(() => this.inflight.delete(handled)),
        () => undefined,
      );
    });
    this.server.requestTimeout = REQUEST_TIMEOUT_MS;
    this.server.headersTimeout = HEADERS_TIMEOUT_MS;
  }

  /** Listens on PUBLISH_HOST:PUBLISH_PORT; resolves with the port. */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port: this.options.config.port, host: this.options.config.host }, () => {
        this.server.off('error', reject);
        resolve((this.server.address() as AddressInfo).port);
      });
    });
  }

  /**
   * Stops taking requests (those arriving on open connections get 503 `draining`), waits up to
   * `closeWaitMs` for the ones in flight to be answered, then closes every socket. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
      this.server.closeIdleConnections();
      await settledWithin(Promise.all([...this.inflight]), this.options.closeWaitMs);
      this.server.closeAllConnections();
      await stopped;
    })();
    return this.closing;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    response.once('finish', () => {
      this.options.events?.emit('publish-api-request', response.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
    });
    const route = routePublishRequest(
      {
        method: request.method,
        url: request.url,
        authorization: request.headers.authorization,
        contentType: request.headers['content-type'],
      },
      this.tokenDigest,
    );
    switch (route) {
      case 'not-found':
        return this.refuse(response, 404, 'not-found', `the publish API serves POST ${PUBLISH_PATH} and GET ${PRESENCE_PATH}<user> only`);
      case 'method-not-allowed':
        if (request.url?.startsWith(PRESENCE_PATH)) {
          return this.refuse(response, 405, 'method-not-allowed', `use GET ${PRESENCE_PATH}<user>`, { Allow: 'GET' });
        }
        return this.refuse(response, 405, 'method-not-allowed', `use POST ${PUBLISH_PATH}`, { Allow: 'POST' });
      case 'unauthorized':
        this.options.logger.info({ remote: request.socket.remoteAddress }, 'publish request refused: no valid PUBLISH_TOKEN');
        return this.refuse(response, 401, 'unauthorized', 'send Authorization: Bearer <PUBLISH_TOKEN>', {
          'WWW-Authenticate': 'Bearer realm="inbox-relay publish"',
        });
      case 'unsupported-media-type':
        return this.refuse(response, 415, 'unsupported-media-type', 'send the body as Content-Type: application/json');
      case 'publish':
        return this.publishRequest(request, response);
      case 'presence':
        return this.presenceRequest(request.url ?? '', response);
    }
  }

  /** Answers the presence of the user the path names: 200, 400 (not a user id), 503 (no Redis, or it failed). */
  private async presenceRequest(url: string, response: ServerResponse): Promise<void> {
    let user: string;
    try {
      user = decodeURIComponent((url.split('?')[0] ?? '').slice(PRESENCE_PATH.length));
    } catch {
      return this.refuse(response, 400, 'invalid-request', 'the path does not name a user id');
    }
    if (!isValidUserId(user)) return this.refuse(response, 400, 'invalid-request', 'user id must be 1-128 characters of [A-Za-z0-9._:@-]');
    const presence = this.options.presence;
    if (!presence) return this.refuse(response, 503, 'unavailable', 'presence is off on this relay (it needs Redis)');
    try {
      return this.json(response, 200, await presence(user));
    } catch (error) {
      this.options.logger.warn({ err: errorMessage(error) }, 'presence read failed');
      return this.refuse(response, 503, 'unavailable', 'presence cannot be read now (Redis); retry', this.retryAfter('unavailable'));
    }
  }

  private async publishRequest(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const { maxBodyBytes, maxBatch } = this.options.config;
    if (this.closing) return this.refuse(response, 503, 'draining', 'this relay node is shutting down; retry', this.retryAfter('draining'));
    const declared = Number(request.headers['content-length'] ?? Number.NaN);
    if (declared > maxBodyBytes)
      return this.refuse(response, 413, 'too-large', `the body exceeds ${maxBodyBytes} bytes (PUBLISH_MAX_BODY_BYTES)`);
    const reserve = Number.isFinite(declared) ? declared : 0;
    if (this.inflightBytes + reserve > MAX_INFLIGHT_BYTES) {
      return this.refuse(response, 503, 'overloaded', 'too many publish requests in flight; retry', this.retryAfter('overloaded'));
    }
    this.inflightBytes += reserve;
    let held = reserve;
    try {
      const body = await this.readBody(request, maxBodyBytes, (bytes) => {
        // A declared length is held from the start; a chunked body as it arrives.
        if (Number.isFinite(declared)) return;
        this.inflightBytes += bytes;
        held += bytes;
      });
      if (body === undefined) {
        return this.refuse(response, 413, 'too-large', `the body exceeds ${maxBodyBytes} bytes (PUBLISH_MAX_BODY_BYTES)`);
      }
      let value: unknown;
      try {
        value = JSON.parse(body.toString('utf8'));
      } catch {
        return this.refuse(response, 400, 'invalid-request', 'the body is not valid JSON');
      }
      const parsed = parsePublishRequest(value, { maxBatch, maxMessageBytes: this.options.maxMessageBytes });
      if (!parsed.ok) return this.refuse(response, parsed.status, parsed.status === 413 ? 'too-large' : 'invalid-request', parsed.reason);
      const unavailable = this.closing
        ? { error: 'draining' as const, message: 'this relay node is shutting down; retry' }
        : this.options.unavailable();
      if (unavailable) {
        this.countMessages(unavailable.error === 'draining' ? 'unavailable' : unavailable.error, parsed.messages.length);
        return this.refuse(response, 503, unavailable.error, unavailable.message, this.retryAfter(unavailable.error), {
          ...(parsed.batch ? { results: parsed.messages.map((m) => ({ messageId: m.messageId, status: unavailable.error })) } : {}),
          ...(parsed.batch ? {} : { messageId: parsed.messages[0]!.messageId }),
        });
      }
      await this.publishAll(response, parsed.messages, parsed.batch);
    } finally {
      this.inflightBytes -= held;
    }
  }

  /** Publishes every message at once (one confirm channel keeps their order) and answers once all are settled. */
  private async publishAll(response: ServerResponse, messages: PublishMessage[], batch: boolean): Promise<void> {
    const settled = await Promise.allSettled(messages.map((message) => this.options.publish(message)));
    const statuses: ResultStatus[] = settled.map((outcome) => (outcome.status === 'fulfilled' ? 'accepted' : failureOf(outcome.reason)));
    const counts = new Map<ResultStatus, number>();
    for (const status of statuses) counts.set(status, (counts.get(status) ?? 0) + 1);
    for (const [status, count] of counts) this.countMessages(status, count);
    const failures = statuses.filter((status): status is PublishFailure => status !== 'accepted');
    const results = messages.map((message, index) => ({ messageId: message.messageId, status: statuses[index]! }));
    if (failures.length === 0) {
      return this.json(response, 202, batch ? { results } : { messageId: messages[0]!.messageId });
    }
    const answer = batch ? answerForAll(failures) : { error: failures[0]!, ...answerFor(failures[0]!) };
    const rejected = settled.find((outcome): outcome is PromiseRejectedResult => outcome.status === 'rejected');
    // Full inboxes are the producers' business (and can come by the thousand): debug; the broker's failures: warn.
    this.options.logger[answer.status === 429 ? 'debug' : 'warn'](
      { messages: messages.length, failed: failures.length, error: answer.error, err: errorMessage(rejected?.reason) },
      'publish request not fully accepted',
    );
    return this.refuse(
      response,
      answer.status,
      answer.error,
      answer.message,
      { 'Retry-After': String(answer.retryAfterS) },
      {
        ...(batch ? { results } : { messageId: messages[0]!.messageId }),
      },
    );
  }

  /** The body, or undefined once it passes `limit` bytes (the rest is not read; the socket closes after the answer). */
  private readBody(request: IncomingMessage, limit: number, onBytes: (bytes: number) => void): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let length = 0;
      const onData = (chunk: Buffer): void => {
        length += chunk.length;
        if (length > limit) {
          request.off('data', onData);
          request.pause();
          resolve(undefined);
          return;
        }
        onBytes(chunk.length);
        chunks.push(chunk);
      };
      request.on('data', onData);
      request.once('end', () => resolve(Buffer.concat(chunks, length)));
      request.once('error', () => reject(new RequestClosedError()));
      request.once('close', () => {
        if (!request.complete) reject(new RequestClosedError());
      });
    });
  }

  private countMessages(outcome: ResultStatus, count: number): void {
    this.options.events?.emit('publish-api-messages', outcome, count);
  }

  private retryAfter(reason: keyof typeof RETRY_AFTER_S): Record<string, string> {
    return { 'Retry-After': String(RETRY_AFTER_S[reason]) };
  }

  private refuse(
    response: ServerResponse,
    status: number,
    error: RequestRefusal,
    message: string,
    headers: Record<string, string> = {},
    extra: Record<string, unknown> = {},
  ): void {
    // A body not read whole (413) or a node going away: the connection is not reused.
    const close = status === 413 || error === 'draining' || this.closing !== undefined;
    this.json(response, status, { error, message, ...extra }, { ...headers, ...(close ? { Connection: 'close' } : {}) });
  }

  private json(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    response.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
    response.end(`${JSON.stringify(body)}\n`);
  }
}
