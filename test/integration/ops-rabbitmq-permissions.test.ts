/**
 * The relay user of ops/rabbitmq/definitions.json on the real broker: a user made for this file
 * with exactly that user's permissions (through the management API) runs a relay that declares
 * its topology, moves a message published before its user's queue existed, provisions and
 * consumes the inbox, and publishes its alarm probe, with no access refused; the same user is
 * refused on names of other applications. The user is deleted at the end; its relay's queues go
 * with the run's unique names (test/helpers/global-setup.ts).
 */
import { randomUUID } from 'node:crypto';
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConnectionPool } from '../../src/amqp/connection-pool.js';
import { Producer } from '../../src/amqp/producer.js';
import { INBOX_EXCHANGE } from '../../src/amqp/topology.js';
import { vhostOf } from '../../src/cli/operator-config.js';
import { silentLogger } from '../../src/log.js';
import { json } from '../helpers/ops-files.js';
import { RawClient } from '../helpers/raw-client.js';
import { rabbitmqUrl, startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

interface DefinitionsPermission {
  user: string;
  configure: string;
  write: string;
  read: string;
}

const RELAY_USER = 'inbox-relay';

/** The management API of the test broker (RABBITMQ_MANAGEMENT_URL, else port 15672 on its host) with the broker URL's credentials. */
function management(): { base: string; authorization: string } {
  const broker = new URL(rabbitmqUrl());
  const base = new URL(process.env.RABBITMQ_MANAGEMENT_URL ?? `http://${broker.hostname}:15672`);
  const user = decodeURIComponent(base.username || broker.username || 'guest');
  const password = decodeURIComponent(base.password || broker.password || 'guest');
  base.username = '';
  base.password = '';
  return {
    base: `${base.toString().replace(/\/$/, '')}/api`,
    authorization: `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`,
  };
}

async function api(method: 'PUT' | 'DELETE', path: string, body?: unknown): Promise<void> {
  const { base, authorization } = management();
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, {
      method,
      headers: { authorization, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    throw new Error(`this test needs the RabbitMQ management API (${base}, or RABBITMQ_MANAGEMENT_URL): ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (!response.ok) throw new Error(`${method} ${path}: HTTP ${response.status} ${await response.text()}`);
}

/** Runs `action` on a fresh channel of `model` and returns how the broker answered: 'ok' or the error. */
async function attempt(model: ChannelModel, action: (channel: ConfirmChannel) => Promise<unknown>): Promise<string> {
  const channel = await model.createConfirmChannel();
  const errors: string[] = [];
  channel.on('error', (error: Error) => errors.push(error.message));
  try {
    await action(channel);
    await channel.close();
    return errors[0] ?? 'ok';
  } catch (error) {
    return errors[0] ?? (error as Error).message;
  }
}

describe("the relay user's permissions on a real broker", () => {
  const permissions = json<{ permissions: DefinitionsPermission[] }>('ops/rabbitmq/definitions.json').permissions.find(
    (entry) => entry.user === RELAY_USER,
  )!;
  const vhost = vhostOf(rabbitmqUrl());
  const user = uid('amqp-perm');
  const password = randomUUID();
  let restrictedUrl: string;
  let created = false;
  let relay: TestRelay | undefined;

  beforeAll(async () => {
    await api('PUT', `/users/${encodeURIComponent(user)}`, { password, tags: '' });
    created = true;
    const { configure, write, read } = permissions;
    await api('PUT', `/permissions/${encodeURIComponent(vhost)}/${encodeURIComponent(user)}`, { configure, write, read });
    const url = new URL(rabbitmqUrl());
    url.username = encodeURIComponent(user);
    url.password = encodeURIComponent(password);
    restrictedUrl = url.toString();
  });

  afterAll(async () => {
    await relay?.stop();
    if (created) await api('DELETE', `/users/${encodeURIComponent(user)}`);
  });

  it('runs a relay: topology, an unrouted message moved, the inbox provisioned and consumed', async () => {
    relay = await startTestRelay(testConfig({ RABBITMQ_URL: restrictedUrl }));
    const inboxUser = uid('perm');
    // A foreign producer (the broker's own account, no provisioning): the message takes the
    // unrouted path, and the relay's mover provisions the inbox and moves it in.
    const producer = new Producer({ url: rabbitmqUrl() });
    let messageId: string;
    try {
      ({ messageId } = await producer.publish(inboxUser, { hello: 'permissions' }));
    } finally {
      await producer.close();
    }
    const client = await RawClient.connect(relay.url);
    try {
      client.send({ type: 'hello', token: token(inboxUser) });
      await client.next('welcome');
      const message = await client.next('msg', 20_000);
      expect([message.seq, message.id, message.data]).toEqual([1, messageId, { hello: 'permissions' }]);
      client.send({ type: 'ack', seq: 1 });
    } finally {
      client.close();
    }
  });

  it("publishes the relay's alarm probe without losing the publisher channel", async () => {
    const confirmChannels: ConfirmChannel[] = [];
    const pool = new ConnectionPool({ url: restrictedUrl, name: `${user} probe`, channelsPerConnection: 4, logger: silentLogger() });
    const open = pool.openConfirmChannel.bind(pool);
    pool.openConfirmChannel = async () => {
      const channel = await open();
      confirmChannels.push(channel);
      return channel;
    };
    const producer = new Producer({ url: restrictedUrl, pool });
    const errors: string[] = [];
    try {
      await producer.touch();
      expect(confirmChannels).toHaveLength(1);
      confirmChannels[0]!.on('error', (error: Error) => errors.push(error.message));
      // A round trip on the same channel: it fails if the probe's publish was refused (403 closes the channel).
      await confirmChannels[0]!.checkExchange(INBOX_EXCHANGE);
    } finally {
      await producer.close();
      await pool.close();
    }
    expect(errors).toEqual([]);
  });

  it('is refused on the names of other applications and on the broker exchanges', async () => {
    const model = await amqp.connect(restrictedUrl);
    model.on('error', () => undefined);
    const foreign = uid('other-app');
    try {
      expect(await attempt(model, (channel) => channel.assertQueue(foreign, { durable: false, autoDelete: true }))).toMatch(
        /ACCESS_REFUSED/,
      );
      expect(await attempt(model, (channel) => channel.assertExchange(foreign, 'fanout', { durable: false, autoDelete: true }))).toMatch(
        /ACCESS_REFUSED/,
      );
      expect(
        await attempt(model, async (channel) => {
          channel.publish('amq.topic', 'anything', Buffer.from('x'));
          await channel.waitForConfirms();
        }),
      ).toMatch(/ACCESS_REFUSED/);
      // And allowed on its own: a passive look at the dead-letter queue the relay declared.
      expect(await attempt(model, (channel) => channel.checkQueue('inbox.dead'))).toBe('ok');
    } finally {
      await model.close().catch(() => undefined);
    }
  });
});
