/**
 * The HTTP publish API's pure parts: the request body (publish-request.ts), the answer for each
 * failure (publish-outcome.ts) and the routing before the body is read (publish-api.ts).
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ErrorCode, RelayError } from '../../src/errors.js';
import { routePublishRequest } from '../../src/publish/publish-api.js';
import { answerFor, answerForAll, failureOf } from '../../src/publish/publish-outcome.js';
import { parsePublishRequest, type ParsedRequest } from '../../src/publish/publish-request.js';

const limits = { maxBatch: 3, maxMessageBytes: 64 };

function accepted(parsed: ParsedRequest) {
  if (!parsed.ok) throw new Error(`refused: ${parsed.reason}`);
  return parsed;
}

function refused(value: unknown): { status: number; reason: string } {
  const parsed = parsePublishRequest(value, limits);
  if (parsed.ok) throw new Error('accepted');
  return { status: parsed.status, reason: parsed.reason };
}

describe('parsePublishRequest', () => {
  it('takes one message, publishes JSON data as its JSON text, and makes up a messageId when none is given', () => {
    const parsed = accepted(parsePublishRequest({ user: 'alice', data: { text: 'hi', n: [1, 2] } }, limits));
    expect(parsed.batch).toBe(false);
    expect(parsed.messages).toHaveLength(1);
    const [message] = parsed.messages;
    expect(message).toMatchObject({ user: 'alice', contentType: 'application/json' });
    expect(message!.body.toString()).toBe('{"text":"hi","n":[1,2]}');
    expect(message!.messageId).toMatch(/^[0-9a-f-]{36}$/);
    const other = accepted(parsePublishRequest({ user: 'alice', data: 1 }, limits)).messages[0]!.messageId;
    expect(other).not.toBe(message!.messageId);
  });

  it('keeps a given messageId and content type; under a non-JSON type data is base64 and published as bytes', () => {
    const [json] = accepted(
      parsePublishRequest({ user: 'a', data: 'text', messageId: 'm-1', contentType: 'application/vnd.x+json' }, limits),
    ).messages;
    expect(json).toMatchObject({ messageId: 'm-1', contentType: 'application/vnd.x+json' });
    expect(json!.body.toString()).toBe('"text"');
    const [bytes] = accepted(
      parsePublishRequest({ user: 'a', data: 'AQID/w==', contentType: 'application/octet-stream' }, limits),
    ).messages;
    expect([...bytes!.body]).toEqual([1, 2, 3, 255]);
    expect(refused({ user: 'a', data: { not: 'base64' }, contentType: 'image/png' })).toEqual({
      status: 400,
      reason: 'data: must be a base64 string under the non-JSON content type image/png',
    });
    expect(refused({ user: 'a', data: 'not base64!', contentType: 'image/png' }).status).toBe(400);
  });

  it('takes a batch in order', () => {
    const parsed = accepted(
      parsePublishRequest(
        {
          messages: [
            { user: 'a', data: 1, messageId: 'x' },
            { user: 'b', data: null, messageId: 'y' },
          ],
        },
        limits,
      ),
    );
    expect(parsed.batch).toBe(true);
    expect(parsed.messages.map((m) => [m.user, m.messageId, m.body.toString()])).toEqual([
      ['a', 'x', '1'],
      ['b', 'y', 'null'],
    ]);
  });

  it('refuses a bad request with 400 naming the first problem and where it is', () => {
    expect(refused({ data: 1 })).toEqual({ status: 400, reason: 'user: user must be a string' });
    expect(refused({ user: 'no spaces', data: 1 }).reason).toBe('user: user must be 1-128 characters of [A-Za-z0-9._:@-]');
    expect(refused({ user: 'dead', data: 1 }).status).toBe(400);
    expect(refused({ user: 'a' }).reason).toMatch(/^data: /);
    expect(refused({ user: 'a', data: 1, messageID: 'typo' }).status).toBe(400);
    expect(refused({ user: 'a', data: 1, messageId: 'a\nb' }).reason).toBe('messageId: messageId must not contain control characters');
    expect(refused({ user: 'a', data: 1, messageId: 'é'.repeat(128) }).reason).toBe(
      'messageId: messageId must be at most 255 bytes of UTF-8',
    );
    expect(refused({ user: 'a', data: 1, messageId: '' }).status).toBe(400);
    expect(
      refused({
        messages: [
          { user: 'a', data: 1 },
          { user: 7, data: 1 },
        ],
      }).reason,
    ).toBe('messages[1].user: user must be a string');
    expect(refused({ messages: [] }).reason).toBe('messages: messages must hold at least one message');
    expect(refused({ messages: [1, 2, 3, 4] }).reason).toBe('messages: messages must hold at most 3 messages (PUBLISH_MAX_BATCH)');
    expect(refused({ messages: [{ user: 'a', data: 1 }], extra: true }).status).toBe(400);
    expect(refused([{ user: 'a', data: 1 }]).status).toBe(400);
    expect(refused('text').status).toBe(400);
  });

  it('refuses with 413 a message whose body is over MAX_MESSAGE_BYTES, naming it', () => {
    expect(refused({ user: 'a', data: 'x'.repeat(63) })).toEqual({ status: 413, reason: 'data: 65 bytes exceed MAX_MESSAGE_BYTES (64)' });
    expect(
      refused({
        messages: [
          { user: 'a', data: 1 },
          { user: 'a', data: 'x'.repeat(100) },
        ],
      }).reason,
    ).toMatch(/^messages\[1\]\.data: /);
    expect(accepted(parsePublishRequest({ user: 'a', data: 'x'.repeat(62) }, limits)).messages[0]!.body.length).toBe(64);
  });
});

describe('publish answers', () => {
  it('maps the producer library errors to the failure words', () => {
    expect(failureOf(new RelayError(ErrorCode.publishNacked, 'full'))).toBe('inbox-full');
    expect(failureOf(new RelayError(ErrorCode.brokerBlocked, 'alarm'))).toBe('broker-blocked');
    expect(failureOf(new RelayError(ErrorCode.publishTimeout, 'slow'))).toBe('timeout');
    expect(failureOf(new RelayError(ErrorCode.brokerUnavailable, 'breaker open'))).toBe('unavailable');
    expect(failureOf(new Error('anything else'))).toBe('unavailable');
  });

  it('answers a full inbox with 429 and the broker failures with 503, each with a Retry-After', () => {
    expect(answerFor('inbox-full')).toMatchObject({ status: 429, retryAfterS: 5 });
    for (const failure of ['broker-blocked', 'timeout', 'unavailable'] as const) {
      expect(answerFor(failure).status).toBe(503);
      expect(answerFor(failure).retryAfterS).toBeGreaterThanOrEqual(1);
    }
  });

  it('answers a batch with 503 if any failure is the broker, else 429, and the longest Retry-After', () => {
    expect(answerForAll(['inbox-full', 'inbox-full'])).toMatchObject({ status: 429, error: 'inbox-full', retryAfterS: 5 });
    expect(answerForAll(['inbox-full', 'timeout'])).toMatchObject({ status: 503, error: 'timeout', retryAfterS: 5 });
    expect(answerForAll(['timeout', 'broker-blocked'])).toMatchObject({ status: 503, error: 'timeout', retryAfterS: 10 });
  });
});

describe('routePublishRequest', () => {
  const token = 'publish-token-5f2c9a7e1b3d4f60a8c2e9b7d1f3a5c7';
  const digest = createHash('sha256').update(token).digest();
  const route = (overrides: Partial<Parameters<typeof routePublishRequest>[0]>) =>
    routePublishRequest(
      { method: 'POST', url: '/v1/publish', authorization: `Bearer ${token}`, contentType: 'application/json', ...overrides },
      digest,
    );

  it('takes POST /v1/publish with the token and a JSON body', () => {
    expect(route({})).toBe('publish');
    expect(route({ url: '/v1/publish?x=1', contentType: 'Application/JSON; charset=utf-8' })).toBe('publish');
  });

  it('answers another path 404 and another method 405 before looking at the token', () => {
    expect(route({ url: '/v1/publishx', authorization: undefined })).toBe('not-found');
    expect(route({ url: '/', authorization: undefined })).toBe('not-found');
    expect(route({ method: 'GET', authorization: undefined })).toBe('method-not-allowed');
  });

  it('takes GET /v1/presence/<user> with the token, whatever the content type, and refuses other methods with 405 first', () => {
    expect(route({ method: 'GET', url: '/v1/presence/alice', contentType: undefined })).toBe('presence');
    expect(route({ method: 'GET', url: '/v1/presence/alice', authorization: undefined })).toBe('unauthorized');
    expect(route({ method: 'POST', url: '/v1/presence/alice', authorization: undefined })).toBe('method-not-allowed');
    expect(route({ method: 'GET', url: '/v1/presence/' })).toBe('not-found');
  });

  it('refuses a missing or wrong token before the content type', () => {
    expect(route({ authorization: undefined, contentType: 'text/plain' })).toBe('unauthorized');
    expect(route({ authorization: `Bearer ${token}x` })).toBe('unauthorized');
    expect(route({ authorization: `Basic ${token}` })).toBe('unauthorized');
    expect(route({ contentType: 'text/plain' })).toBe('unsupported-media-type');
    expect(route({ contentType: undefined })).toBe('unsupported-media-type');
  });
});
