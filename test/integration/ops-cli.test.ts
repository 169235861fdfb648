/**
 * The operator CLI against the real RabbitMQ and Redis: every subcommand, in-process through
 * runCli (the same code the binary runs), plus the compiled entry points (bin, npm run token,
 * serve + drain). Dead-letter tests that touch inbox.dead itself filter by a unique user; the
 * others use private queues shaped like it, so that parallel tests never see each other's.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inboxQueueArguments, inboxQueueName } from '../../src/amqp/topology.js';
import { RelayProcess } from '../../src/process/relay-process.js';
import { REPLAY_HEADER, REPLAY_SEAL_HEADER } from '../../src/delivery/message-codec.js';
import { ReplaySeal } from '../../src/delivery/replay-seal.js';
import { RedisStore } from '../../src/store/redis-store.js';
import { AmqpFixture, buildDist, cli, runCompiled, runNpm, xDeath } from '../helpers/ops-cli.js';
import { RawClient } from '../helpers/raw-client.js';
import {
  TEST_REPLAY_KEY,
  TEST_SECRET,
  rabbitmqUrl,
  redisUrl,
  startTestRelay,
  testConfig,
  testEnv,
  testProducer,
  token,
  uid,
  type TestRelay,
} from '../helpers/relay.js';

const MAIN = 'dist/src/cli/main.js';
const TOKEN = 'dist/src/cli/token.js';

/** The CLI's environment: the relay's variables without JWT_SECRET (operator commands do not need it). */
function opsEnv(overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  const { JWT_SECRET: _unused, ...env } = testEnv({ RABBITMQ_MANAGEMENT_URL: '', ...overrides });
  return env;
}

describe('inbox-relay CLI', () => {
  let fixture: AmqpFixture;
  const cleanup: string[] = [];
  beforeAll(async () => {
    fixture = await AmqpFixture.open(rabbitmqUrl());
  });
  afterAll(async () => {
    for (const queue of cleanup) await fixture.deleteQueue(queue);
    await fixture.close();
  });

  describe('usage', () => {
    it('exits 2 with a message for an unknown command, a bad option or a missing argument', async () => {
      const env = opsEnv();
      for (const args of [
        ['frobnicate'],
        ['inspect'],
        ['inspect', 'u', '--bogus'],
        ['dlq'],
        ['dlq', 'shred'],
        ['dlq', 'list', '--limit', 'ten'],
        [],
      ]) {
        const run = await cli(args, env);
        expect(run.code, args.join(' ')).toBe(2);
        expect(run.stderr.length, args.join(' ')).toBeGreaterThan(0);
        expect(run.stdout).toBe('');
      }
    });

    it('rejects an invalid user id before touching the broker', async () => {
      const run = await cli(['inspect', 'no spaces/allowed'], opsEnv({ RABBITMQ_URL: 'amqp://127.0.0.1:1' }));
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/user/);
    });

    it('reports errors as JSON on stderr with --json', async () => {
      const run = await cli(['inspect', 'u', '--json', '--bogus'], opsEnv());
      expect(run.code, run.stderr).toBe(2);
      expect(JSON.parse(run.stderr)).toMatchObject({ ok: false, exitCode: 2 });
    });

    it('exits 2 naming the variable on a configuration error', async () => {
      const run = await cli(['inspect', 'u'], opsEnv({ QUEUE_TYPE: 'stream' }));
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/QUEUE_TYPE/);
    });

    it('exits 1 when the broker is unreachable, without printing credentials', async () => {
      const run = await cli(['inspect', 'u'], opsEnv({ RABBITMQ_URL: 'amqp://someone:hunter2@127.0.0.1:1' }));
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/cannot connect to RabbitMQ/);
      expect(run.stderr).not.toContain('hunter2');
    });

    it('prints help for every command and the version', async () => {
      const help = await cli(['help'], opsEnv());
      expect(help.code, help.stderr).toBe(0);
      for (const command of [
        'serve',
        'publish',
        'inspect',
        'dlq list',
        'dlq replay',
        'dlq purge',
        'topics follow',
        'topics unfollow',
        'topics list',
        'provision',
        'drain',
        'token',
      ]) {
        expect(help.stdout).toContain(command);
      }
      const one = await cli(['dlq', 'replay', '--help'], opsEnv());
      expect(one.code, one.stderr).toBe(0);
      expect(one.stdout).toContain('x-inbox-relay-replay');
      expect((await cli(['--version'], opsEnv())).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    });
  });

  describe('provision', () => {
    it('declares the user inbox with the configured arguments and binds it', async () => {
      const user = uid('ops-prov');
      cleanup.push(inboxQueueName(user));
      const run = await cli(['provision', user, '--json'], opsEnv({ QUEUE_MAX_LENGTH: '500' }));
      expect(run.code, run.stderr).toBe(0);
      const out = run.json<{ queue: string; arguments: Record<string, unknown> }>();
      expect(out.queue).toBe(`inbox.${user}`);
      expect(out.arguments).toEqual(inboxQueueArguments({ queueType: 'quorum', queueMaxLength: 500, queueDeliveryLimit: 20 }));
      expect(await fixture.depth(out.queue)).toBe(0);
      // Bound: a message published to `inbox` with the user as key lands in it.
      const channel = await fixture.model.createConfirmChannel();
      channel.publish('inbox', user, Buffer.from('{}'), { messageId: 'p1', persistent: true });
      await channel.waitForConfirms();
      await channel.close();
      expect(await fixture.depth(out.queue)).toBe(1);
      // Idempotent.
      const again = await cli(['provision', user], opsEnv({ QUEUE_MAX_LENGTH: '500' }));
      expect(again.code, again.stderr).toBe(0);
    });

    it('keeps and reports a queue that exists with other arguments', async () => {
      const user = uid('ops-prov');
      cleanup.push(inboxQueueName(user));
      expect((await cli(['provision', user], opsEnv())).code).toBe(0);
      const run = await cli(['provision', user, '--json'], opsEnv({ QUEUE_MAX_LENGTH: '7' }));
      expect(run.code, run.stderr).toBe(0);
      expect(run.json<{ mismatched: string[] }>().mismatched).toContain(`inbox.${user}`);
    });
  });

  describe('topics', () => {
    it('follows, lists and unfollows patterns; a published topic reaches the inbox only while followed', async () => {
      const user = uid('ops-topics');
      const queue = inboxQueueName(user);
      cleanup.push(queue);
      const env = opsEnv({ RABBITMQ_MANAGEMENT_URL: undefined });
      // A unique first word, so that no other test's topic reaches this inbox.
      const root = user.replace(/[^A-Za-z0-9_-]/g, '_');
      for (const pattern of [`${root}.sports.*`, `${root}.#`]) {
        const follow = await cli(['topics', 'follow', user, pattern, '--json'], env);
        expect(follow.code, follow.stderr).toBe(0);
        expect(follow.json()).toMatchObject({ user, queue, exchange: 'inbox.topics', pattern, following: true });
      }
      const list = await cli(['topics', 'list', user, '--json'], env);
      expect(list.code, list.stderr).toBe(0);
      expect(list.json<{ patterns: string[] }>().patterns).toEqual([`${root}.#`, `${root}.sports.*`].sort());
      const channel = await fixture.model.createConfirmChannel();
      // Matches both patterns: one copy (RabbitMQ routes a message to a queue once).
      channel.publish('inbox.topics', `${root}.sports.x`, Buffer.from('{}'), { messageId: 't1', persistent: true });
      await channel.waitForConfirms();
      expect(await fixture.depth(queue)).toBe(1);
      const unfollow = await cli(['topics', 'unfollow', user, `${root}.#`], env);
      expect(unfollow.code, unfollow.stderr).toBe(0);
      expect(unfollow.stdout).toContain('no longer follows');
      channel.publish('inbox.topics', `${root}.weather`, Buffer.from('{}'), { messageId: 't2', persistent: true });
      channel.publish('inbox.topics', `${root}.sports.y`, Buffer.from('{}'), { messageId: 't3', persistent: true });
      await channel.waitForConfirms();
      await channel.close();
      expect(await fixture.depth(queue)).toBe(2);
      const after = await cli(['topics', 'list', user], env);
      expect(after.stdout).toContain(`${root}.sports.*`);
      expect(after.stdout).not.toContain(`${root}.#`);
    });

    it('refuses a bad pattern or action with exit 2 and binds nothing', async () => {
      const user = uid('ops-topics');
      for (const args of [
        ['topics', 'follow', user, 'news..x'],
        ['topics', 'follow', user, 'news.sport*'],
        ['topics', 'follow', 'bad user', 'news.#'],
        ['topics', 'unfollow', user, ''],
        ['topics', 'subscribe', user, 'news.#'],
        ['topics'],
      ]) {
        const run = await cli(args, opsEnv());
        expect(run.code, args.join(' ')).toBe(2);
      }
      expect((await cli(['topics', 'follow', user, 'news..x'], opsEnv())).stderr).toContain('invalid pattern');
      expect(await fixture.depth(inboxQueueName(user))).toBeUndefined();
    });

    it('lists nothing without the management API, with exit 1 and the reason', async () => {
      const run = await cli(['topics', 'list', uid('ops-topics')], opsEnv());
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('management API');
    });
  });

  describe('publish', () => {
    it('publishes JSON with the given messageId, persistent, and never prints the body', async () => {
      const user = uid('ops-pub');
      const queue = inboxQueueName(user);
      cleanup.push(queue);
      const run = await cli(['publish', user, '{"secret":"s3cr3t-body"}', '--message-id', 'ops-m-1', '--json'], opsEnv());
      expect(run.code, run.stderr).toBe(0);
      expect(run.json()).toMatchObject({ user, messageId: 'ops-m-1', contentType: 'application/json' });
      expect(run.stdout + run.stderr).not.toContain('s3cr3t-body');
      const [message] = await fixture.drainQueue(queue);
      expect(message?.content.toString()).toBe('{"secret":"s3cr3t-body"}');
      expect(message?.properties).toMatchObject({ messageId: 'ops-m-1', contentType: 'application/json', deliveryMode: 2 });
      expect(typeof message?.properties.timestamp).toBe('number');
    });

    it('publishes a file as raw bytes with another content type', async () => {
      const user = uid('ops-pub');
      const queue = inboxQueueName(user);
      cleanup.push(queue);
      const dir = await mkdtemp(join(tmpdir(), 'ops-pub-'));
      try {
        const bytes = Buffer.from([0, 1, 2, 250, 255]);
        await writeFile(join(dir, 'body.bin'), bytes);
        const run = await cli(['publish', user, `@${join(dir, 'body.bin')}`, '--content-type', 'application/octet-stream'], opsEnv());
        expect(run.code, run.stderr).toBe(0);
        const [message] = await fixture.drainQueue(queue);
        expect(message?.content.equals(bytes)).toBe(true);
        expect(message?.properties.contentType).toBe('application/octet-stream');
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('refuses invalid JSON and a missing file with exit 2, publishing nothing', async () => {
      const user = uid('ops-pub');
      expect((await cli(['publish', user, '{not json'], opsEnv())).code).toBe(2);
      expect((await cli(['publish', user, '@/nonexistent/file.json'], opsEnv())).code).toBe(2);
      expect(await fixture.depth(inboxQueueName(user))).toBeUndefined();
    });

    it('exits 1 when RabbitMQ refuses the message (inbox full)', async () => {
      const user = uid('ops-pub');
      cleanup.push(inboxQueueName(user));
      const env = opsEnv({ QUEUE_MAX_LENGTH: '1' });
      // Quorum queues notice the overflow after the fact: one message past the limit may still go in.
      const codes: (number | 'running')[] = [];
      let refused;
      for (let i = 0; i < 5 && !refused; i += 1) {
        const run = await cli(['publish', user, String(i)], env);
        codes.push(run.code);
        if (run.code !== 0) refused = run;
      }
      expect(codes.slice(0, 1)).toEqual([0]);
      expect(refused?.code).toBe(1);
      expect(refused?.stderr).toMatch(/refused/);
    });
  });

  describe('inspect', () => {
    let relay: TestRelay;
    let management: Server;
    let managementUrl: string;
    const managementRequests: IncomingMessage[] = [];
    beforeAll(async () => {
      relay = await startTestRelay(testConfig());
      management = createServer((request, response) => {
        managementRequests.push(request);
        const expected = `Basic ${Buffer.from('ops:pa ss').toString('base64')}`;
        if (request.headers.authorization !== expected) return response.writeHead(401).end();
        const match = /^\/api\/queues\/%2F\/(.+)$/.exec(request.url ?? '');
        if (!match) return response.writeHead(404).end();
        response
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ name: decodeURIComponent(match[1]!), messages_unacknowledged: 2 }));
      });
      await new Promise<void>((resolve) => management.listen(0, '127.0.0.1', resolve));
      managementUrl = `http://ops:pa%20ss@127.0.0.1:${(management.address() as AddressInfo).port}`;
    });
    afterAll(async () => {
      await relay.stop();
      await new Promise((resolve) => management.close(resolve));
    });

    it('reports an unknown user as absent without creating its queue or its state', async () => {
      const user = uid('ops-insp');
      const env = opsEnv({ REDIS_KEY_PREFIX: relay.config.redisKeyPrefix });
      const run = await cli(['inspect', user, '--json'], env);
      expect(run.code, run.stderr).toBe(0);
      expect(run.json()).toMatchObject({
        user,
        queue: { name: `inbox.${user}`, exists: false, ready: null, unacked: null },
        state: { known: true, present: false },
      });
      expect(await fixture.depth(inboxQueueName(user))).toBeUndefined();
      expect(await relay.relay.store.peek(user)).toBeUndefined();
    });

    it('shows ready, consumers, unacked (management API) and the numbering of a live user', async () => {
      const user = uid('ops-insp');
      cleanup.push(inboxQueueName(user));
      const producer = testProducer(relay.config);
      const client = await RawClient.connect(relay.url);
      try {
        for (let i = 1; i <= 3; i += 1) await producer.publish(user, { i });
        client.send({ type: 'hello', token: token(user) });
        const welcome = await client.next('welcome');
        for (let i = 1; i <= 3; i += 1) await client.next('msg');
        client.send({ type: 'ack', seq: 1 });
        await expect.poll(async () => (await relay.relay.store.peek(user))?.acked, { timeout: 10_000 }).toBe(1);
        const env = opsEnv({ REDIS_KEY_PREFIX: relay.config.redisKeyPrefix, RABBITMQ_MANAGEMENT_URL: managementUrl });
        const run = await cli(['inspect', user, '--json'], env);
        expect(run.code, run.stderr).toBe(0);
        expect(run.json()).toEqual({
          user,
          queue: {
            name: `inbox.${user}`,
            exists: true,
            ready: 0,
            consumers: 1,
            unacked: 2,
            unackedSource: 'management-api',
            unackedUnknownReason: null,
            // This stand-in for the management API lists no consumer details.
            owner: null,
            nodes: null,
          },
          state: { known: true, present: true, epoch: welcome.epoch, seq: 3, acked: 1, pending: 2, history: { from: 1, to: 3, count: 3 } },
        });
        expect(managementRequests.at(-1)?.url).toBe(`/api/queues/%2F/inbox.${user}`);
        const text = await cli(['inspect', user], env);
        expect(text.stdout).toMatch(/0 ready, 2 unacked, 1 consumer/);
        expect(text.stdout).toContain(`epoch:     ${welcome.epoch}`);
      } finally {
        client.close();
        await client.closed;
        await producer.close();
      }
    });

    it('reports unacked as unknown when the management API is disabled or refuses', async () => {
      const user = uid('ops-insp');
      cleanup.push(inboxQueueName(user));
      expect((await cli(['provision', user], opsEnv())).code).toBe(0);
      const disabled = await cli(['inspect', user, '--json'], opsEnv({ RABBITMQ_MANAGEMENT_URL: '' }));
      expect(disabled.json()).toMatchObject({
        queue: { exists: true, unacked: null, unackedUnknownReason: expect.stringMatching(/disabled/) },
      });
      const refused = await cli(
        ['inspect', user, '--json'],
        opsEnv({ RABBITMQ_MANAGEMENT_URL: managementUrl.replace('pa%20ss', 'wrong') }),
      );
      expect(refused.json()).toMatchObject({ queue: { unacked: null, unackedUnknownReason: expect.stringMatching(/401/) } });
      expect(refused.stdout).not.toContain('wrong@');
    });

    it('reports the state as unknown without REDIS_URL or with Redis down', async () => {
      const user = uid('ops-insp');
      const none = await cli(['inspect', user, '--json'], opsEnv({ REDIS_URL: undefined }));
      expect(none.code, none.stderr).toBe(0);
      expect(none.json()).toMatchObject({ state: { known: false, reason: expect.stringMatching(/REDIS_URL/) } });
      const down = await cli(['inspect', user, '--json'], opsEnv({ REDIS_URL: 'redis://127.0.0.1:1' }));
      expect(down.code, down.stderr).toBe(0);
      expect(down.json()).toMatchObject({ state: { known: false, reason: expect.stringMatching(/unavailable/) } });
    });
  });

  describe('dlq list and purge', () => {
    it('lists dead letters in order, twice, without losing any; bodies only on request', async () => {
      const queue = await fixture.privateQueue(uid('ops-dead'));
      cleanup.push(queue);
      const users = [uid('a'), uid('b'), uid('c')];
      for (const [index, user] of users.entries()) {
        await fixture.put(queue, JSON.stringify({ n: index, note: 'private-body' }), {
          messageId: `dl-${index}`,
          contentType: 'application/json',
          headers: xDeath(`inbox.${user}`, user),
        });
      }
      for (let round = 0; round < 2; round += 1) {
        const run = await cli(['dlq', 'list', '--queue', queue, '--json'], opsEnv());
        expect(run.code, run.stderr).toBe(0);
        const out = run.json<{
          depth: number;
          listed: number;
          messages: { messageId: string; user: string; reason: string; queue: string; position: number }[];
        }>();
        expect(out.depth).toBe(3);
        expect(out.messages.map((m) => m.messageId)).toEqual(['dl-0', 'dl-1', 'dl-2']);
        expect(out.messages.map((m) => m.user)).toEqual(users);
        expect(out.messages[0]).toMatchObject({ position: 1, reason: 'rejected', queue: `inbox.${users[0]}` });
        expect(run.stdout).not.toContain('private-body');
        expect(out.messages[0]).not.toHaveProperty('body');
      }
      const limited = await cli(['dlq', 'list', '--queue', queue, '--limit', '2', '--bodies', '--json'], opsEnv());
      const out = limited.json<{ messages: { body: unknown; bodyEncoding: string }[] }>();
      expect(out.messages).toHaveLength(2);
      expect(out.messages[1]).toMatchObject({ body: { n: 1, note: 'private-body' }, bodyEncoding: 'json' });
      await expect.poll(() => fixture.depth(queue)).toBe(3);
      const kept = await fixture.drainQueue(queue);
      expect(kept.map((m) => m.properties.messageId)).toEqual(['dl-0', 'dl-1', 'dl-2']);
    });

    it('exits 1 for a dead-letter queue that does not exist', async () => {
      const run = await cli(['dlq', 'list', '--queue', uid('ops-missing')], opsEnv());
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/does not exist/);
    });

    it('purges only with --yes', async () => {
      const queue = await fixture.privateQueue(uid('ops-dead'));
      cleanup.push(queue);
      for (let i = 0; i < 3; i += 1) await fixture.put(queue, '{}', { messageId: `p-${i}`, headers: xDeath('inbox.x', 'x') });
      const refused = await cli(['dlq', 'purge', '--queue', queue], opsEnv());
      expect(refused.code, refused.stderr).toBe(2);
      expect(await fixture.depth(queue)).toBe(3);
      const run = await cli(['dlq', 'purge', '--queue', queue, '--yes', '--json'], opsEnv());
      expect(run.code, run.stderr).toBe(0);
      expect(run.json()).toEqual({ queue, purged: 3 });
      expect(await fixture.depth(queue)).toBe(0);
    });
  });

  describe('dlq replay', () => {
    it("republishes one user's dead letters in order with their properties and leaves the others in place", async () => {
      const queue = await fixture.privateQueue(uid('ops-dead'));
      cleanup.push(queue);
      const [alice, bob] = [uid('alice'), uid('bob')];
      cleanup.push(inboxQueueName(alice), inboxQueueName(bob));
      const put = (id: string, user: string | undefined, extra: Record<string, unknown> = {}) =>
        fixture.put(queue, JSON.stringify({ id }), {
          messageId: id,
          contentType: 'application/json',
          correlationId: `corr-${id}`,
          type: 'note',
          appId: 'ops-test',
          timestamp: 1_700_000_000_000,
          expiration: '60000',
          headers: { ...(user ? xDeath(`inbox.${user}`, user) : xDeath('inbox.unrouted', 'not a user')), 'x-custom': 'kept', ...extra },
        });
      await put('r-1', alice);
      await put('r-2', bob);
      await put('r-3', alice, { [REPLAY_HEADER]: 1 });
      await put('r-4', undefined);

      const run = await cli(['dlq', 'replay', '--queue', queue, '--user', alice, '--json'], opsEnv());
      expect(run.code, run.stderr).toBe(0);
      expect(run.json()).toMatchObject({
        ok: true,
        keyFingerprint: new ReplaySeal([TEST_REPLAY_KEY]).fingerprint(),
        scanned: 4,
        replayed: [
          { messageId: 'r-1', user: alice },
          { messageId: 'r-3', user: alice },
        ],
        skipped: [],
      });
      const copies = await fixture.drainQueue(inboxQueueName(alice));
      expect(copies.map((m) => m.properties.messageId)).toEqual(['r-1', 'r-3']);
      expect(copies.map((m) => m.properties.headers?.[REPLAY_HEADER])).toEqual([1, 2]);
      // Each copy is sealed with REPLAY_KEY for its user, messageId, count and body.
      const seal = new ReplaySeal([TEST_REPLAY_KEY]);
      expect(copies.map((m) => m.properties.headers?.[REPLAY_SEAL_HEADER])).toEqual(
        copies.map((m, index) =>
          seal.seal({ user: alice, messageId: m.properties.messageId as string, count: index + 1, body: m.content }),
        ),
      );
      const [first] = copies;
      expect(first?.content.toString()).toBe('{"id":"r-1"}');
      expect(first?.properties).toMatchObject({
        correlationId: 'corr-r-1',
        type: 'note',
        appId: 'ops-test',
        timestamp: 1_700_000_000_000,
        contentType: 'application/json',
        deliveryMode: 2,
      });
      expect(first?.properties.expiration).toBeUndefined();
      expect(first?.properties.headers?.['x-custom']).toBe('kept');
      expect(first?.properties.headers?.['x-death']).toBeUndefined();
      expect(first?.properties.headers?.['x-first-death-queue']).toBeUndefined();

      const rest = await cli(['dlq', 'list', '--queue', queue, '--json'], opsEnv());
      expect(rest.json<{ messages: { messageId: string }[] }>().messages.map((m) => m.messageId)).toEqual(['r-2', 'r-4']);

      const all = await cli(['dlq', 'replay', '--queue', queue, '--json'], opsEnv());
      expect(all.code, all.stderr).toBe(0);
      expect(all.json()).toMatchObject({
        replayed: [{ messageId: 'r-2', user: bob }],
        skipped: [{ messageId: 'r-4', reason: expect.stringMatching(/no user/) }],
      });
      expect((await fixture.drainQueue(inboxQueueName(bob))).map((m) => m.properties.messageId)).toEqual(['r-2']);
      expect((await fixture.drainQueue(queue)).map((m) => m.properties.messageId)).toEqual(['r-4']);
    });

    it('refuses to replay without REPLAY_KEY, before touching the queue', async () => {
      const queue = await fixture.privateQueue(uid('ops-dead'));
      cleanup.push(queue);
      const user = uid('nokey');
      await fixture.put(queue, '{}', { messageId: 'k-1', headers: xDeath(`inbox.${user}`, user) });
      const run = await cli(['dlq', 'replay', '--queue', queue], opsEnv({ REPLAY_KEY: undefined }));
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/REPLAY_KEY is not set/);
      expect(await fixture.depth(queue)).toBe(1);
    });

    it('stops at a copy RabbitMQ refuses and keeps it and the rest queued, in order', async () => {
      const queue = await fixture.privateQueue(uid('ops-dead'));
      cleanup.push(queue);
      const user = uid('full');
      cleanup.push(inboxQueueName(user));
      const env = opsEnv({ QUEUE_MAX_LENGTH: '1' });
      const ids = ['f-1', 'f-2', 'f-3', 'f-4', 'f-5'];
      for (const id of ids) await fixture.put(queue, '{}', { messageId: id, headers: xDeath(`inbox.${user}`, user) });
      const run = await cli(['dlq', 'replay', '--queue', queue, '--json'], env);
      expect(run.code, run.stderr).toBe(1);
      const out = run.json<{ ok: boolean; replayed: { messageId: string }[]; failed: { messageId: string; user: string } }>();
      const done = out.replayed.length;
      expect(done).toBeGreaterThanOrEqual(1);
      expect(out).toMatchObject({ ok: false, failed: { messageId: ids[done], user } });
      expect(out.replayed.map((r) => r.messageId)).toEqual(ids.slice(0, done));
      await expect.poll(() => fixture.depth(queue)).toBe(ids.length - done);
      expect((await fixture.drainQueue(queue)).map((m) => m.properties.messageId)).toEqual(ids.slice(done));
    });

    it('replays a message a client dead-lettered, and the client gets it again with a new seq', async () => {
      const relay = await startTestRelay(testConfig());
      const producer = testProducer(relay.config);
      const user = uid('ops-replay');
      cleanup.push(inboxQueueName(user));
      const client = await RawClient.connect(relay.url);
      try {
        const { messageId } = await producer.publish(user, { order: 'pizza' });
        client.send({ type: 'hello', token: token(user) });
        await client.next('welcome');
        const first = await client.next('msg');
        expect(first).toMatchObject({ seq: 1, id: messageId, data: { order: 'pizza' } });
        // A private tap on inbox.dlx tells when the dead letter went out, without scanning the shared inbox.dead.
        const tap = await fixture.privateQueue(uid('ops-tap'));
        cleanup.push(tap);
        await fixture.bind(tap, 'inbox.dlx');
        client.send({ type: 'nack', seq: 1, requeue: false });
        await expect
          .poll(async () => (await fixture.drainQueue(tap)).some((m) => m.properties.messageId === messageId), {
            timeout: 20_000,
            interval: 250,
          })
          .toBe(true);

        // inbox.dead is shared with other tests: replay this user's messages only.
        let replayed: unknown[] = [];
        for (let attempt = 0; attempt < 10 && replayed.length === 0; attempt += 1) {
          if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 300));
          const run = await cli(['dlq', 'replay', '--user', user, '--json'], opsEnv());
          expect(run.code, run.stderr).toBe(0);
          replayed = run.json<{ replayed: unknown[] }>().replayed;
        }
        expect(replayed).toEqual([{ messageId, user }]);

        const again = await client.next('msg', 20_000);
        expect(again).toMatchObject({ seq: 2, id: messageId, data: { order: 'pizza' } });
        client.send({ type: 'ack', seq: 2 });
        await expect.poll(async () => (await relay.relay.store.peek(user))?.acked, { timeout: 10_000 }).toBe(2);
        const after = await cli(['dlq', 'list', '--limit', '10000', '--json'], opsEnv());
        expect(after.json<{ messages: { user: string }[] }>().messages.filter((m) => m.user === user)).toEqual([]);
      } finally {
        client.close();
        await client.closed;
        await producer.close();
        await relay.stop();
      }
    });
  });

  describe('drain', () => {
    it('drains a running relay: clients get 1012 and --wait returns once the node stopped', async () => {
      const relay = await startTestRelay(testConfig());
      const client = await RawClient.connect(relay.url);
      const user = uid('ops-drain');
      cleanup.push(inboxQueueName(user));
      try {
        client.send({ type: 'hello', token: token(user) });
        await client.next('welcome');
        const run = await cli(['drain', '--admin-url', `http://127.0.0.1:${relay.relay.adminPort}`, '--wait', '--json'], opsEnv());
        expect(run.code, run.stderr).toBe(0);
        expect(run.json()).toMatchObject({ accepted: true, drained: true });
        expect(relay.relay.ready).toBe(false);
        expect((await client.closeCode()).code).toBe(1012);
      } finally {
        await relay.stop();
      }
    });

    it('exits 1 when no relay answers', async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const run = await cli(['drain', '--admin-url', `http://127.0.0.1:${port}`], opsEnv());
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/ECONNREFUSED/);
    });
  });

  describe('token', () => {
    it('prints only a token for the user, signed with JWT_SECRET, with the requested lifetime', async () => {
      const user = uid('ops-tok');
      const run = await cli(['token', user, '--ttl', '120'], testEnv());
      expect(run.code, run.stderr).toBe(0);
      const printed = run.stdout.trim();
      expect(run.stdout).toBe(`${printed}\n`);
      const claims = jwt.verify(printed, TEST_SECRET, { algorithms: ['HS256'] }) as jwt.JwtPayload;
      expect(claims.sub).toBe(user);
      expect(claims.exp! - claims.iat!).toBe(120);
    });

    it('refuses a --ttl the relay would refuse (longer than JWT_MAX_AGE)', async () => {
      const run = await cli(['token', 'u', '--ttl', String(2 * 24 * 3600)], testEnv());
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/longer than JWT_MAX_AGE \(86400 s\)/);
      expect((await cli(['token', 'u', '--ttl', String(2 * 24 * 3600)], testEnv({ JWT_MAX_AGE: '0' }))).code).toBe(0);
    });

    it('needs JWT_SECRET (exit 2) where operator commands do not', async () => {
      const run = await cli(['token', 'u'], opsEnv());
      expect(run.code, run.stderr).toBe(2);
      expect(run.stderr).toMatch(/JWT_SECRET/);
    });
  });

  describe('compiled entry points', () => {
    beforeAll(async () => {
      // Usually a no-op: the global setup already built dist/ (rebuilding under running child relays would break them).
      await buildDist();
    }, 180_000);

    it('is an executable script with a node shebang', async () => {
      expect((await readFile(MAIN, 'utf8')).startsWith('#!/usr/bin/env node\n')).toBe(true);
      const run = await runCompiled(MAIN, ['--version'], opsEnv());
      expect(run.code, run.stderr).toBe(0);
      const usage = await runCompiled(MAIN, ['nope'], opsEnv());
      expect(usage.code, usage.stderr).toBe(2);
    });

    it('keeps src/cli/token.ts working as `npm run token -- <user> [ttl]`', async () => {
      const user = uid('ops-tok');
      const direct = await runCompiled(TOKEN, [user, '90'], testEnv());
      expect(direct.code, direct.stderr).toBe(0);
      const claims = jwt.verify(direct.stdout.trim(), TEST_SECRET, { algorithms: ['HS256'] }) as jwt.JwtPayload;
      expect(claims).toMatchObject({ sub: user });
      expect(claims.exp! - claims.iat!).toBe(90);
      const npm = await runNpm(['run', '--silent', 'token', '--', user, '60'], testEnv({ PATH: process.env.PATH, HOME: process.env.HOME }));
      expect(npm.code, npm.stderr).toBe(0);
      const viaNpm = jwt.verify(npm.stdout.trim(), TEST_SECRET, { algorithms: ['HS256'] }) as jwt.JwtPayload;
      expect(viaNpm.sub).toBe(user);
      expect(viaNpm.exp! - viaNpm.iat!).toBe(60);
    });

    it('serve runs a relay that drain --wait stops cleanly', async () => {
      // Ready once it logs that it listens (with the admin port it picked).
      const serve = await RelayProcess.start({
        script: MAIN,
        args: ['serve'],
        env: testEnv({ LOG_LEVEL: 'info' }),
        readyTimeoutMs: 60_000,
      });
      try {
        const adminPort = serve.ports?.adminPort;
        expect(adminPort).toBeGreaterThan(0);
        const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
        expect(ready.status).toBe(200);
        const run = await runCompiled(MAIN, ['drain', '--admin-url', `http://127.0.0.1:${adminPort}`, '--wait'], opsEnv());
        expect(run.code, run.stderr).toBe(0);
        expect(await serve.exited).toEqual({ code: 0, signal: null });
      } finally {
        await serve.stop('SIGKILL');
      }
    });
  });

  it('inspect never creates state in the store', async () => {
    const user = uid('ops-insp');
    const prefix = `${uid('ops')}:`;
    const run = await cli(['inspect', user], opsEnv({ REDIS_KEY_PREFIX: prefix }));
    expect(run.code, run.stderr).toBe(0);
    const store = new RedisStore({ url: redisUrl(), keyPrefix: prefix, limits: { maxCount: 10, maxAgeMs: 60_000 } });
    await store.connect();
    try {
      expect(await store.peek(user)).toBeUndefined();
      expect(await store.redis.keys(`${prefix}*`)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
