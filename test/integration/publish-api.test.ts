/**
 * The HTTP publish API (POST /v1/publish) against a relay on the real RabbitMQ and Redis: a 202
 * means RabbitMQ confirmed the message and a connected client receives it; batches; bad input,
 * auth, wrong paths and sizes; a full inbox answered 429 with Retry-After. The broker's own
 * failures (resource alarm, breaker, no confirm) come from a PublishApi with a stand-in
 * publisher: an alarm cannot be raised on the shared broker. Last, docs/publish-api.openapi.yaml
 * parses and documents exactly the statuses and error words these tests saw.
 */
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULTS } from '../../src/config.js';
import { inboxQueueName, provisionInbox } from '../../src/amqp/topology.js';
import { ErrorCode, RelayError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { PublishApi, type Unavailable } from '../../src/publish/publish-api.js';
import { waitUntil } from '../../src/wait-until.js';
import { PUBLISH_FAILURES, REQUEST_REFUSALS } from '../../src/publish/publish-outcome.js';
import type { PublishMessage } from '../../src/publish/publish-request.js';
import { AmqpFixture } from '../helpers/ops-cli.js';
import { yamlFile } from '../helpers/ops-files.js';
import { RawClient } from '../helpers/raw-client.js';
import { rabbitmqUrl, startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

const PUBLISH_TOKEN = 'publish-test-7d41c9e2a05b38f6-1e2d3c4b5a697887';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

/** Statuses and error words seen, by method, for the check against the OpenAPI document. */
const seen = { POST: new Set<number>(), GET: new Set<number>(), presence: new Set<string>(), errors: new Set<string>() };

/** One request with node:http (full control over headers and how the body is sent). */
function send(
  port: number,
  options: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer; chunks?: Buffer[] },
): Promise<Answer> {
  const method = options.method ?? 'POST';
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port, method, path: options.path ?? '/v1/publish', headers: options.headers ?? {}, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          const body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          if (options.path === undefined || options.path === '/v1/publish') {
            if (method === 'POST' || method === 'GET') seen[method].add(res.statusCode ?? 0);
          }
          if (options.path?.startsWith('/v1/presence/')) seen.presence.add(`${method} ${res.statusCode ?? 0}`);
          if (typeof body.error === 'string') seen.errors.add(body.error);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
        });
      },
    );
    req.on('error', reject);
    if (options.chunks) {
      // Chunked, no Content-Length: keep sending until the server answers.
      let index = 0;
      const next = (): void => {
        if (req.destroyed || index >= options.chunks!.length) return void req.end();
        req.write(options.chunks![index++], () => setImmediate(next));
      };
      next();
    } else {
      req.end(options.body);
    }
  });
}

const auth = { Authorization: `Bearer ${PUBLISH_TOKEN}`, 'Content-Type': 'application/json' };

function post(port: number, body: unknown, headers: Record<string, string> = auth): Promise<Answer> {
  return send(port, { headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

describe('HTTP publish API', () => {
  describe('on a relay', () => {
    let relay: TestRelay;
    let port: number;
    let fixture: AmqpFixture;
    const cleanup: string[] = [];
    beforeAll(async () => {
      relay = await startTestRelay(
        testConfig({
          PUBLISH_PORT: '0',
          PUBLISH_TOKEN,
          PUBLISH_MAX_BATCH: '5',
          PUBLISH_MAX_BODY_BYTES: '4096',
          MAX_MESSAGE_BYTES: '1024',
          QUEUE_MAX_LENGTH: '3',
        }),
      );
      port = relay.relay.publishPort!;
      fixture = await AmqpFixture.open(rabbitmqUrl());
    });
    afterAll(async () => {
      await relay.stop();
      for (const queue of cleanup) await fixture.deleteQueue(queue);
      await fixture.close();
    });

    async function client(prefix: string): Promise<{ user: string; ws: RawClient }> {
      const user = uid(prefix);
      cleanup.push(inboxQueueName(user));
      const ws = await RawClient.connect(relay.url);
      ws.send({ type: 'hello', token: token(user) });
      await ws.next('welcome');
      return { user, ws };
    }

    it("answers GET /v1/presence/<user> with the user's presence, behind the same token", async () => {
      const user = uid('http-presence');
      cleanup.push(inboxQueueName(user));
      const path = `/v1/presence/${user}`;
      const headers = { Authorization: `Bearer ${PUBLISH_TOKEN}` };
      const ws = await RawClient.connect(relay.url);
      ws.send({ type: 'hello', token: token(user), device: 'kiosk' });
      await ws.next('welcome');
      let answer: Answer | undefined;
      await waitUntil(async () => (answer = await send(port, { method: 'GET', path, headers })).body.online === true, {
        timeoutMs: 1_000,
        what: () => `online (last: ${JSON.stringify(answer)})`,
      });
      expect(answer).toMatchObject({
        status: 200,
        body: { user, online: true, connections: [{ node: relay.config.nodeId, device: 'kiosk' }] },
      });
      expect(answer!.body).not.toHaveProperty('lastSeen');
      ws.close();
      await ws.closed;
      await waitUntil(async () => (answer = await send(port, { method: 'GET', path, headers })).body.online === false, {
        timeoutMs: 1_000,
        what: () => `offline (last: ${JSON.stringify(answer)})`,
      });
      expect(answer).toMatchObject({ status: 200, body: { user, online: false, connections: [], lastSeen: expect.any(Number) } });
      expect(await send(port, { method: 'GET', path })).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
      const post = await send(port, { method: 'POST', path, headers });
      expect(post).toMatchObject({ status: 405, body: { error: 'method-not-allowed' } });
      expect(post.headers.allow).toBe('GET');
      expect(await send(port, { method: 'GET', path: '/v1/presence/no%20such', headers })).toMatchObject({
        status: 400,
        body: { error: 'invalid-request' },
      });
    });

    it('answers 202 once RabbitMQ confirmed, and a connected client receives the message', async () => {
      const { user, ws } = await client('http-one');
      try {
        const answer = await post(port, { user, data: { text: 'hi' }, messageId: 'http-m-1' });
        expect(answer).toMatchObject({ status: 202, body: { messageId: 'http-m-1' } });
        expect(await ws.next('msg')).toMatchObject({ seq: 1, id: 'http-m-1', contentType: 'application/json', data: { text: 'hi' } });
        // Bytes under another content type: base64 in, the same base64 out to the client.
        const bytes = await post(port, { user, data: 'AQID/w==', contentType: 'application/octet-stream' });
        expect(bytes.status).toBe(202);
        expect(await ws.next('msg')).toMatchObject({
          seq: 2,
          id: bytes.body.messageId,
          contentType: 'application/octet-stream',
          data: 'AQID/w==',
        });
      } finally {
        ws.close();
        await ws.closed;
      }
    });

    it('delivers a message published twice under one messageId once', async () => {
      const { user, ws } = await client('http-dup');
      try {
        expect((await post(port, { user, data: 1, messageId: 'same' })).status).toBe(202);
        expect((await post(port, { user, data: 1, messageId: 'same' })).status).toBe(202);
        expect((await post(port, { user, data: 2, messageId: 'next' })).status).toBe(202);
        expect(await ws.next('msg')).toMatchObject({ seq: 1, id: 'same' });
        expect(await ws.next('msg')).toMatchObject({ seq: 2, id: 'next' });
      } finally {
        ws.close();
        await ws.closed;
      }
    });

    it('publishes a batch in order, to several users, and answers with every messageId', async () => {
      const alice = await client('http-batch-a');
      const bob = await client('http-batch-b');
      try {
        const answer = await post(port, {
          messages: [
            { user: alice.user, data: { n: 1 } },
            { user: bob.user, data: { n: 1 }, messageId: 'bob-1' },
            { user: alice.user, data: { n: 2 } },
            { user: alice.user, data: { n: 3 } },
          ],
        });
        expect(answer.status).toBe(202);
        const results = answer.body.results as { messageId: string; status: string }[];
        expect(results.map((r) => r.status)).toEqual(['accepted', 'accepted', 'accepted', 'accepted']);
        expect(results[1]!.messageId).toBe('bob-1');
        for (const [index, n] of [1, 2, 3].entries()) {
          expect(await alice.ws.next('msg')).toMatchObject({ seq: index + 1, data: { n }, id: results[[0, 2, 3][index]!]!.messageId });
        }
        expect(await bob.ws.next('msg')).toMatchObject({ seq: 1, id: 'bob-1' });
      } finally {
        for (const { ws } of [alice, bob]) {
          ws.close();
          await ws.closed;
        }
      }
    });

    it('refuses bad input with 400 and a reason, publishing nothing', async () => {
      const user = uid('http-bad');
      cleanup.push(inboxQueueName(user));
      const cases: [unknown, RegExp][] = [
        ['{not json', /not valid JSON/],
        [{ data: 1 }, /^user: /],
        [{ user: 'not a user', data: 1 }, /^user: user must be 1-128 characters/],
        [{ user, data: 1, extra: true }, /no other fields/],
        [{ user, data: { x: 1 }, contentType: 'image/png' }, /^data: must be a base64 string/],
        [
          {
            messages: [
              { user, data: 1 },
              { user, data: 1, messageId: 'a\u0001b' },
            ],
          },
          /^messages\[1\]\.messageId: /,
        ],
        [{ messages: Array.from({ length: 6 }, () => ({ user, data: 1 })) }, /at most 5 messages \(PUBLISH_MAX_BATCH\)/],
      ];
      for (const [body, reason] of cases) {
        const answer = await post(port, body);
        expect(answer.status, JSON.stringify(body)).toBe(400);
        expect(answer.body).toMatchObject({ error: 'invalid-request', message: expect.stringMatching(reason) });
      }
      // No message went anywhere: not even the unrouted path declared the user's inbox.
      expect(await fixture.depth(inboxQueueName(user))).toBeUndefined();
    });

    it('refuses without the token (401, before reading the body) and with another token', async () => {
      const body = JSON.stringify({ user: 'alice', data: 1 });
      const none = await send(port, { headers: { 'Content-Type': 'application/json' }, body });
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toBe('Bearer realm="inbox-relay publish"');
      expect(none.body).toMatchObject({ error: 'unauthorized' });
      const wrong = await post(port, body, { ...auth, Authorization: `Bearer ${PUBLISH_TOKEN.slice(0, -1)}x` });
      expect(wrong.status).toBe(401);
      // A body too large for the limit still gets 401: the token is checked first.
      const large = await send(port, { headers: { 'Content-Type': 'application/json' }, body: 'x'.repeat(10_000) });
      expect(large.status).toBe(401);
    });

    it('answers 404 for other paths, 405 for other methods, 415 for a body that is not JSON', async () => {
      expect((await send(port, { path: '/', headers: auth, body: '{}' })).status).toBe(404);
      expect((await send(port, { path: '/v1/publish/x', headers: auth, body: '{}' })).body).toMatchObject({ error: 'not-found' });
      const get = await send(port, { method: 'GET', headers: auth });
      expect(get.status).toBe(405);
      expect(get.headers.allow).toBe('POST');
      const text = await post(port, 'user=alice', { ...auth, 'Content-Type': 'text/plain' });
      expect(text).toMatchObject({ status: 415, body: { error: 'unsupported-media-type' } });
    });

    it('answers 413 for a body over PUBLISH_MAX_BODY_BYTES, declared or sent chunked, and a message over MAX_MESSAGE_BYTES', async () => {
      const declared = await new Promise<number>((resolve, reject) => {
        // Only the headers: the answer comes before any byte of the body.
        const req = httpRequest(
          { host: '127.0.0.1', port, method: 'POST', path: '/v1/publish', headers: { ...auth, 'Content-Length': '100000' }, agent: false },
          (res) => {
            resolve(res.statusCode ?? 0);
            res.resume();
            req.destroy();
          },
        );
        req.on('error', reject);
        req.flushHeaders();
      });
      expect(declared).toBe(413);
      seen.POST.add(413);
      const chunked = await send(port, { headers: auth, chunks: Array.from({ length: 20 }, () => Buffer.alloc(1024, 0x20)) });
      expect(chunked).toMatchObject({ status: 413, body: { error: 'too-large' } });
      const message = await post(port, { user: 'alice', data: 'x'.repeat(2000) });
      expect(message).toMatchObject({ status: 413, body: { error: 'too-large', message: expect.stringMatching(/MAX_MESSAGE_BYTES/) } });
    });

    it("answers 429 with Retry-After when the user's inbox is full, naming what was accepted", async () => {
      const user = uid('http-full');
      cleanup.push(inboxQueueName(user));
      await provisionInbox(() => fixture.model.createChannel(), user, {
        queueType: 'quorum',
        queueMaxLength: 3,
        queueDeliveryLimit: 20,
      });
      // Quorum queues apply the limit once over it (and a burst of publishes can pass it further):
      // publish one at a time until the inbox refuses one.
      const accepted: string[] = [];
      let refused: Answer | undefined;
      for (let n = 0; n < 10 && !refused; n += 1) {
        const single = await post(port, { user, data: { n }, messageId: `full-${n}` });
        if (single.status === 202) accepted.push(`full-${n}`);
        else refused = single;
      }
      expect(accepted.length).toBeGreaterThanOrEqual(3);
      expect(refused).toMatchObject({ status: 429, body: { error: 'inbox-full', messageId: `full-${accepted.length}` } });
      expect(refused!.headers['retry-after']).toBe('5');
      // A batch into the full inbox: 429, and which of its messages went in (none, while it is full).
      const batch = await post(port, {
        messages: [
          { user, data: 'a', messageId: 'full-a' },
          { user, data: 'b', messageId: 'full-b' },
        ],
      });
      expect(batch).toMatchObject({
        status: 429,
        body: {
          error: 'inbox-full',
          results: [
            { messageId: 'full-a', status: 'inbox-full' },
            { messageId: 'full-b', status: 'inbox-full' },
          ],
        },
      });
      expect(batch.headers['retry-after']).toBe('5');
      const held = await fixture.drainQueue(inboxQueueName(user));
      expect(held.map((m) => m.properties.messageId)).toEqual(accepted);
    });
  });

  describe('when the broker cannot take messages', () => {
    let api: PublishApi;
    let port: number;
    let publish: (message: PublishMessage) => Promise<void> = () => Promise.resolve();
    let unavailable: Unavailable | undefined;
    let published = 0;
    beforeAll(async () => {
      api = new PublishApi({
        config: { port: 0, host: '127.0.0.1', token: PUBLISH_TOKEN, maxBatch: 5, maxBodyBytes: 4096 },
        maxMessageBytes: 1024,
        publish: (message) => {
          published += 1;
          return publish(message);
        },
        unavailable: () => unavailable,
        presence: () => Promise.reject(new Error('Connection is closed.')),
        closeWaitMs: 1_000,
        logger: silentLogger(),
      });
      port = await api.listen();
    });
    afterAll(async () => {
      await api.close();
    });

    it('answers a presence request 503 with Retry-After when Redis fails', async () => {
      const answer = await send(port, { method: 'GET', path: '/v1/presence/alice', headers: { Authorization: `Bearer ${PUBLISH_TOKEN}` } });
      expect(answer).toMatchObject({ status: 503, body: { error: 'unavailable' } });
      expect(answer.headers['retry-after']).toBe('5');
    });

    it('answers 503 with Retry-After at once, without publishing, while RabbitMQ blocks publishers or a breaker is open', async () => {
      unavailable = { error: 'broker-blocked', message: 'RabbitMQ is blocking publishers (memory); retry later' };
      const before = published;
      const blocked = await post(port, { user: 'alice', data: 1, messageId: 'b-1' });
      expect(blocked).toMatchObject({ status: 503, body: { error: 'broker-blocked', messageId: 'b-1' } });
      expect(blocked.headers['retry-after']).toBe('10');
      unavailable = { error: 'unavailable', message: 'rabbitmq unavailable (breaker open); retry later' };
      const open = await post(port, { messages: [{ user: 'alice', data: 1, messageId: 'o-1' }] });
      expect(open).toMatchObject({ status: 503, body: { error: 'unavailable', results: [{ messageId: 'o-1', status: 'unavailable' }] } });
      expect(open.headers['retry-after']).toBe('5');
      expect(published).toBe(before);
      unavailable = undefined;
    });

    it('answers 503 for a publish the broker did not confirm in time, or refused as blocked, with the messageIds to retry', async () => {
      publish = (message) =>
        message.user === 'slow'
          ? Promise.reject(new RelayError(ErrorCode.publishTimeout, 'no confirm', { retryable: true }))
          : message.user === 'full'
            ? Promise.reject(new RelayError(ErrorCode.publishNacked, 'nacked', { retryable: true }))
            : Promise.resolve();
      const single = await post(port, { user: 'slow', data: 1, messageId: 's-1' });
      expect(single).toMatchObject({ status: 503, body: { error: 'timeout', messageId: 's-1' } });
      expect(single.headers['retry-after']).toBe('2');
      const batch = await post(port, {
        messages: [
          { user: 'fine', data: 1, messageId: 'f-1' },
          { user: 'full', data: 1, messageId: 'x-1' },
          { user: 'slow', data: 1, messageId: 's-2' },
        ],
      });
      expect(batch).toMatchObject({
        status: 503,
        body: {
          error: 'timeout',
          results: [
            { messageId: 'f-1', status: 'accepted' },
            { messageId: 'x-1', status: 'inbox-full' },
            { messageId: 's-2', status: 'timeout' },
          ],
        },
      });
      expect(batch.headers['retry-after']).toBe('5');
      publish = () => Promise.reject(new RelayError(ErrorCode.brokerBlocked, 'blocked', { retryable: true }));
      expect(await post(port, { user: 'alice', data: 1 })).toMatchObject({ status: 503, body: { error: 'broker-blocked' } });
      publish = () => Promise.resolve();
    });

    it('answers requests in flight when it closes, then takes no more', async () => {
      let confirm: (() => void) | undefined;
      publish = () => new Promise<void>((resolve) => (confirm = resolve));
      const pending = post(port, { user: 'alice', data: 1, messageId: 'late-1' });
      await expect.poll(() => confirm !== undefined).toBe(true);
      const closing = api.close();
      confirm!();
      expect(await pending).toMatchObject({ status: 202, body: { messageId: 'late-1' } });
      await closing;
      await expect(post(port, { user: 'alice', data: 1 })).rejects.toThrow(/ECONNREFUSED/);
    });
  });

  describe('docs/publish-api.openapi.yaml', () => {
    interface Operation {
      responses: Record<string, { headers?: Record<string, unknown> }>;
    }
    const doc = yamlFile<{
      openapi: string;
      paths: Record<string, { post: Operation; get: Operation }>;
      components: { schemas: Record<string, { properties: Record<string, { enum?: string[]; maxItems?: number }> }> };
    }>('docs/publish-api.openapi.yaml');

    it('is OpenAPI 3.1 and documents exactly the statuses the API answered in these tests', () => {
      expect(doc.openapi).toMatch(/^3\.1\./);
      const operation = doc.paths['/v1/publish']!;
      expect(Object.keys(operation.post.responses).map(Number).sort()).toEqual([...seen.POST].sort());
      expect(Object.keys(operation.get.responses).map(Number)).toEqual([...seen.GET]);
      for (const status of ['429', '503']) expect(operation.post.responses[status]?.headers, status).toHaveProperty('Retry-After');
      const presence = doc.paths['/v1/presence/{user}']!;
      const documented = [
        ...Object.keys(presence.get.responses).map((status) => `GET ${status}`),
        ...Object.keys(presence.post.responses).map((status) => `POST ${status}`),
      ];
      expect(documented.sort()).toEqual([...seen.presence].sort());
      expect(presence.get.responses['503']?.headers).toHaveProperty('Retry-After');
    });

    it('names every error word of the implementation, and each one these tests saw', () => {
      const { Error: error, Result: result, Batch: batch } = doc.components.schemas;
      expect([...(error!.properties.error!.enum ?? [])].sort()).toEqual([...REQUEST_REFUSALS].sort());
      for (const word of seen.errors) expect(REQUEST_REFUSALS as readonly string[]).toContain(word);
      expect(result!.properties.status!.enum).toEqual(expect.arrayContaining(['accepted', ...PUBLISH_FAILURES, 'draining']));
      expect(batch!.properties.messages!.maxItems).toBe(DEFAULTS.publishMaxBatch);
    });
  });
});
