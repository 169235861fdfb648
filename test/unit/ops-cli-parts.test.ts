import type { MessageProperties, XDeath } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { parseInvocation, usageLine, COMMANDS } from '../../src/cli/commands.js';
import { deliveryLimitWarning } from '../../src/cli/commands/dlq.js';
import { deadLetterUser, matchesFilter, replayCount, replayProperties, summarize } from '../../src/cli/dead-letter.js';
import { defaultManagementUrl, loadOperatorConfig, vhostOf } from '../../src/cli/operator-config.js';
import { jsonSafe, redactUrl, terminalSafe } from '../../src/cli/io.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER } from '../../src/delivery/message-codec.js';
import { ReplaySeal } from '../../src/delivery/replay-seal.js';
import { cli } from '../helpers/ops-cli.js';

const seal = new ReplaySeal(['replay-key-4f9c1e7a2b8d6f0319a5c7e2d4b6f8a0']);

function props(overrides: Partial<MessageProperties> = {}): MessageProperties {
  return {
    contentType: undefined,
    contentEncoding: undefined,
    headers: {},
    deliveryMode: 2,
    priority: undefined,
    correlationId: undefined,
    replyTo: undefined,
    expiration: undefined,
    messageId: 'm-1',
    timestamp: undefined,
    type: undefined,
    userId: undefined,
    appId: undefined,
    clusterId: undefined,
    ...overrides,
  };
}

/** An x-death entry; typed loosely, as RabbitMQ sends reasons amqplib's type does not list (delivery_limit). */
const death = (queue: string, keys: string[], reason = 'rejected'): XDeath =>
  ({
    count: 1,
    reason,
    queue,
    exchange: 'inbox',
    'routing-keys': keys,
    time: { '!': 'timestamp', value: 1_700_000_000 },
  }) as unknown as XDeath;

describe('deadLetterUser', () => {
  it('takes the user of the inbox queue the message died in, newest death first', () => {
    expect(deadLetterUser(props({ headers: { 'x-death': [death('inbox.bob', ['alice']), death('inbox.carol', ['carol'])] } }))).toBe('bob');
  });

  it('falls back to x-first-death-queue, then to a valid routing key of x-death', () => {
    expect(deadLetterUser(props({ headers: { 'x-first-death-queue': 'inbox.dave' } }))).toBe('dave');
    expect(deadLetterUser(props({ headers: { 'x-death': [death('inbox.unrouted', ['bad key!', 'erin'])] } }))).toBe('erin');
  });

  it('takes the user the relay named on a dead letter it published itself, only when there is no x-death', () => {
    expect(deadLetterUser(props({ headers: { 'x-inbox-relay-user': 'frank' } }))).toBe('frank');
    expect(deadLetterUser(props({ headers: { 'x-inbox-relay-user': 'not valid' } }))).toBeUndefined();
    expect(deadLetterUser(props({ headers: { 'x-death': [death('inbox.dead', [])], 'x-inbox-relay-user': 'frank' } }))).toBeUndefined();
  });

  it('finds no user for a message that died in the unrouted queue with an invalid key, or has no x-death', () => {
    expect(deadLetterUser(props({ headers: { 'x-death': [death('inbox.unrouted', ['not valid'])] } }))).toBeUndefined();
    expect(deadLetterUser(props({ headers: {} }))).toBeUndefined();
    expect(deadLetterUser(props({ headers: { 'x-death': [death('inbox.dead', [])] } }))).toBeUndefined();
  });
});

describe('replayProperties', () => {
  it('keeps messageId and properties, drops the broker death headers, expiration and userId, and counts the replay', () => {
    const original = props({
      messageId: 'm-9',
      contentType: 'application/json',
      contentEncoding: 'identity',
      correlationId: 'c-1',
      replyTo: 'reply',
      type: 't',
      appId: 'app',
      priority: 3,
      timestamp: 1_700_000_000_000,
      expiration: '1000',
      userId: 'someone',
      headers: {
        'x-death': [death('inbox.bob', ['bob'])],
        'x-first-death-queue': 'inbox.bob',
        'x-first-death-reason': 'rejected',
        'x-first-death-exchange': 'inbox',
        'x-last-death-queue': 'inbox.bob',
        'x-delivery-count': 4,
        'x-custom': 'kept',
        'x-inbox-relay-reason': 'unroutable-inbox-full',
        'x-inbox-relay-user': 'bob',
        [REPLAY_HEADER]: 2,
        [REPLAY_SEAL_HEADER]: 'the seal of replay 2',
      },
    });
    const content = Buffer.from('{"n":9}');
    expect(replayProperties({ content, properties: original }, 'bob', seal)).toEqual({
      persistent: true,
      messageId: 'm-9',
      contentType: 'application/json',
      contentEncoding: 'identity',
      correlationId: 'c-1',
      replyTo: 'reply',
      type: 't',
      appId: 'app',
      priority: 3,
      timestamp: 1_700_000_000_000,
      headers: {
        'x-custom': 'kept',
        [REPLAY_HEADER]: 3,
        [REPLAY_SEAL_HEADER]: seal.seal({ user: 'bob', messageId: 'm-9', count: 3, body: content }),
      },
    });
  });

  it('starts the replay count at 1 and ignores a count that is not a positive whole number', () => {
    const content = Buffer.from('{}');
    expect(replayProperties({ content, properties: props() }, 'bob', seal).headers).toEqual({
      [REPLAY_HEADER]: 1,
      [REPLAY_SEAL_HEADER]: seal.seal({ user: 'bob', messageId: 'm-1', count: 1, body: content }),
    });
    expect(replayCount(props({ headers: { [REPLAY_HEADER]: 'x' } }))).toBe(0);
    expect(replayCount(props({ headers: { [REPLAY_HEADER]: -2 } }))).toBe(0);
    expect(replayCount(props({ headers: { [REPLAY_HEADER]: 5 } }))).toBe(5);
  });
});

describe('summarize', () => {
  const message = (content: string | Buffer, overrides: Partial<MessageProperties> = {}) => ({
    content: Buffer.isBuffer(content) ? content : Buffer.from(content),
    properties: props({
      headers: {
        'x-death': [death('inbox.bob', ['bob'], 'delivery_limit')],
        'x-first-death-reason': 'delivery_limit',
        'x-delivery-count': 2,
      },
      ...overrides,
    }),
  });

  it('describes a dead letter without its body', () => {
    const summary = summarize(4, message('{"a":1}', { contentType: 'application/json', timestamp: 5 }), false);
    expect(summary).toEqual({
      position: 4,
      messageId: 'm-1',
      user: 'bob',
      reason: 'delivery_limit',
      relayReason: null,
      rabbitmqReason: 'delivery_limit',
      queue: 'inbox.bob',
      deaths: 1,
      diedAt: new Date(1_700_000_000_000).toISOString(),
      firstDeathReason: 'delivery_limit',
      replays: 0,
      deliveryCount: 2,
      contentType: 'application/json',
      bytes: 7,
      timestamp: 5,
    });
  });

  it("shows the relay's reason, queue and time on a copy the relay published, and RabbitMQ's reason is then null", () => {
    const relayCopy = {
      content: Buffer.from('{}'),
      properties: props({
        headers: {
          'x-inbox-relay-reason': 'client-nack',
          'x-inbox-relay-user': 'bob',
          'x-inbox-relay-queue': 'inbox.bob',
          'x-inbox-relay-dead-lettered-at': 1_700_000_000_000,
        },
      }),
    };
    expect(summarize(1, relayCopy, false)).toMatchObject({
      user: 'bob',
      reason: 'client-nack',
      relayReason: 'client-nack',
      rabbitmqReason: null,
      queue: 'inbox.bob',
      deaths: 1,
      diedAt: new Date(1_700_000_000_000).toISOString(),
    });
  });

  it("ignores the relay's headers on a message RabbitMQ dead-lettered (a producer may have set them)", () => {
    const forged = message('{}', {
      headers: { 'x-death': [death('inbox.bob', ['bob'], 'delivery_limit')], 'x-inbox-relay-reason': 'client-nack' },
    });
    expect(summarize(1, forged, false)).toMatchObject({ reason: 'delivery_limit', relayReason: null, rabbitmqReason: 'delivery_limit' });
  });

  it('adds the body on request: JSON as a value, anything else as base64', () => {
    expect(summarize(1, message('{"a":1}'), true)).toMatchObject({ body: { a: 1 }, bodyEncoding: 'json' });
    expect(summarize(1, message('not json', { contentType: 'application/json' }), true)).toMatchObject({
      body: Buffer.from('not json').toString('base64'),
      bodyEncoding: 'base64',
    });
    expect(summarize(1, message(Buffer.from([1, 2]), { contentType: 'application/octet-stream' }), true)).toMatchObject({
      body: 'AQI=',
      bodyEncoding: 'base64',
    });
  });
});

describe('matchesFilter', () => {
  const summary = { user: 'bob', relayReason: 'too-large', rabbitmqReason: null };
  it("matches by user, and by either the relay's or RabbitMQ's reason", () => {
    expect(matchesFilter(summary, {})).toBe(true);
    expect(matchesFilter(summary, { user: 'bob' })).toBe(true);
    expect(matchesFilter(summary, { user: 'alice' })).toBe(false);
    expect(matchesFilter(summary, { reason: 'too-large' })).toBe(true);
    expect(matchesFilter(summary, { user: 'bob', reason: 'client-nack' })).toBe(false);
    expect(matchesFilter({ user: null, relayReason: null, rabbitmqReason: 'delivery_limit' }, { reason: 'delivery_limit' })).toBe(true);
    expect(matchesFilter({ user: null, relayReason: null, rabbitmqReason: 'delivery_limit' }, { user: 'bob' })).toBe(false);
  });
});

describe('terminal-safe output', () => {
  it('escapes C0, DEL, C1, line separators and bidirectional controls in human output', () => {
    expect(terminalSafe('id=\u001b[31mred\u001b[0m\nfake line\ttab\r')).toBe('id=\\x1b[31mred\\x1b[0m\\x0afake line\\x09tab\\x0d');
    expect(terminalSafe('a\u007fb\u009bc\u2028d\u202ee\u2066f')).toBe('a\\x7fb\\x9bc\\u{2028}d\\u{202e}e\\u{2066}f');
    expect(terminalSafe('plain ascii, äöü and 日本')).toBe('plain ascii, äöü and 日本');
  });

  it('escapes in JSON what JSON.stringify leaves raw, keeping the same value', () => {
    const value = { id: 'a\u009bb\u202ec\u001bd' };
    const text = jsonSafe(JSON.stringify(value));
    // eslint-disable-next-line no-control-regex -- control characters are what it must not contain
    expect(text).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    expect(JSON.parse(text)).toEqual(value);
  });
});

describe('deliveryLimitWarning', () => {
  it('warns on RabbitMQ 4.0 to 4.2 only', () => {
    expect(deliveryLimitWarning('4.0.5')).toMatch(/x-delivery-limit=-1/);
    expect(deliveryLimitWarning('4.2.1')).toBeDefined();
    expect(deliveryLimitWarning('4.3.0')).toBeUndefined();
    expect(deliveryLimitWarning('3.10.8')).toBeUndefined();
    expect(deliveryLimitWarning(undefined)).toBeUndefined();
  });
});

describe('parseInvocation', () => {
  it('parses every command with its options, and --json anywhere', () => {
    expect(parseInvocation(['--json', 'inspect', 'bob'])).toMatchObject({ spec: { name: 'inspect' }, positionals: ['bob'], json: true });
    expect(parseInvocation(['dlq', 'replay', '--user', 'bob', '--limit', '5', '--json'])).toMatchObject({
      spec: { name: 'dlq replay' },
      values: { user: 'bob', limit: '5', json: true },
    });
    expect(parseInvocation(['publish', 'bob', '{"a":1}', '--message-id', 'm'])).toMatchObject({
      positionals: ['bob', '{"a":1}'],
      values: { 'message-id': 'm' },
    });
  });

  it('throws usage errors (exit 2) for unknown commands, options and missing or extra arguments', () => {
    for (const argv of [
      ['nope'],
      ['inspect'],
      ['inspect', 'a', 'b'],
      ['inspect', 'a', '--limit', '1'],
      ['dlq'],
      ['dlq', 'nope'],
      ['token', 'u', '--ttl'],
    ]) {
      expect(() => parseInvocation(argv), argv.join(' ')).toThrow(expect.objectContaining({ exitCode: 2 }));
    }
  });

  it('writes a usage line for every command', () => {
    for (const spec of COMMANDS) expect(usageLine(spec)).toMatch(new RegExp(`^inbox-relay ${spec.name}`));
  });
});

describe('operator configuration', () => {
  it('does not need JWT_SECRET and ignores a broken JWT setting', () => {
    expect(loadOperatorConfig({}).rabbitmqUrl).toBe('amqp://guest:guest@127.0.0.1:5672');
    expect(() => loadOperatorConfig({ JWT_ALGORITHMS: 'none' })).not.toThrow();
  });

  it('derives the management URL from RABBITMQ_URL, and disables it when set empty', () => {
    expect(loadOperatorConfig({}).managementUrl).toBe('http://guest:guest@127.0.0.1:15672');
    expect(defaultManagementUrl('amqps://u:p@rabbit.example:5671/prod')).toBe('https://u:p@rabbit.example:15671');
    expect(loadOperatorConfig({ RABBITMQ_MANAGEMENT_URL: '' }).managementUrl).toBeUndefined();
    expect(() => loadOperatorConfig({ RABBITMQ_MANAGEMENT_URL: 'ftp://x' })).toThrow(/RABBITMQ_MANAGEMENT_URL/);
    expect(vhostOf('amqp://h/%2Fprod')).toBe('/prod');
    expect(vhostOf('amqp://h')).toBe('/');
  });

  it('names the variable of an invalid setting', () => {
    expect(() => loadOperatorConfig({ QUEUE_MAX_LENGTH: '-1' })).toThrow(/QUEUE_MAX_LENGTH/);
  });

  it('hides passwords in URLs it prints', () => {
    expect(redactUrl('amqp://user:hunter2@host:5672')).not.toContain('hunter2');
  });
});

describe('presence <user>', () => {
  it('refuses a bad user id as a usage error, and a configuration without Redis as a failure, before connecting', async () => {
    const bad = await cli(['presence', 'no such'], { RABBITMQ_URL: 'amqp://127.0.0.1:1' });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('presence: <user> must be 1-128 characters');
    const noRedis = await cli(['presence', 'alice'], { RABBITMQ_URL: 'amqp://127.0.0.1:1' });
    expect(noRedis.code).toBe(1);
    expect(noRedis.stderr).toContain('neither REDIS_URL nor REDIS_SENTINELS is set');
  });
});
