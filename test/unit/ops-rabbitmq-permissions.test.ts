/**
 * The relay's RabbitMQ account in ops/rabbitmq/definitions.json grants what the relay does on the
 * broker and nothing of other applications: every declaration, binding, publish and consume of
 * the relay's AMQP code (src/amqp), run against recording fake channels, becomes the permission
 * checks RabbitMQ makes for it, and each must pass the account's configure/write/read patterns;
 * names the relay never uses must not. The operator account is separate. The patterns are also
 * checked against a real broker in test/integration/ops-rabbitmq-permissions.test.ts.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ConnectionPool } from '../../src/amqp/connection-pool.js';
import { DeadLetterPublisher } from '../../src/amqp/dead-letter-publisher.js';
import { createInboxConsumerFactory } from '../../src/amqp/inbox-consumer.js';
import { Producer } from '../../src/amqp/producer.js';
import { ReceiptPublisher } from '../../src/amqp/receipt-publisher.js';
import {
  DEAD_LETTER_EXCHANGE,
  DEAD_LETTER_QUEUE,
  INBOX_EXCHANGE,
  RECEIPTS_EXCHANGE,
  UNROUTED_EXCHANGE,
  UNROUTED_QUEUE,
  declareSharedTopology,
  inboxQueueName,
  provisionInbox,
  type QueueSettings,
} from '../../src/amqp/topology.js';
import { UnroutedMover } from '../../src/amqp/unrouted-mover.js';
import type { QueueType } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { json, text } from '../helpers/ops-files.js';

type Permission = 'configure' | 'write' | 'read';

/** One permission check RabbitMQ makes: `permission` on the exchange or queue `name`. */
interface Check {
  permission: Permission;
  kind: 'exchange' | 'queue';
  name: string;
  /** The AMQP method that needs it (for failure messages). */
  method: string;
}

interface DefinitionsUser {
  name: string;
  tags: string[] | string;
}

interface DefinitionsPermission {
  user: string;
  vhost: string;
  configure: string;
  write: string;
  read: string;
}

const definitions = json<{ users: DefinitionsUser[]; permissions: DefinitionsPermission[] }>('ops/rabbitmq/definitions.json');
const RELAY_USER = 'inbox-relay';
const OPERATOR_USER = 'inbox-operator';

function permissionsOf(user: string): DefinitionsPermission {
  const found = definitions.permissions.filter((entry) => entry.user === user);
  expect(found, `one permissions entry for ${user}`).toHaveLength(1);
  return found[0]!;
}

function tagsOf(user: string): string[] {
  const found = definitions.users.find((entry) => entry.name === user);
  if (!found) throw new Error(`definitions.json has no user ${user}`);
  return typeof found.tags === 'string' ? found.tags.split(',').filter(Boolean) : found.tags;
}

/**
 * Whether RabbitMQ grants the check under these patterns. RabbitMQ matches a pattern anywhere in
 * the name (PCRE); the patterns here are anchored and use nothing where PCRE and JavaScript differ.
 */
function allows(permissions: DefinitionsPermission, permission: Permission, name: string): boolean {
  return new RegExp(permissions[permission]).test(name);
}

/**
 * A channel that records the permission checks RabbitMQ makes for each method the relay calls
 * (RabbitMQ's access-control table for AMQP 0-9-1): a declaration needs configure on what it
 * declares, plus write on a dead-letter exchange and read on the queue that names one, or write
 * on an alternate exchange and read on the exchange that names one; queue.bind needs write on the
 * queue and read on the exchange; basic.consume and basic.get read on the queue; basic.publish
 * write on the exchange, the default exchange being `amq.default`. Passive declarations
 * (checkQueue) need none.
 */
class RecordingChannel {
  readonly checks: Check[] = [];
  consumer: ((message: ConsumeMessage | null) => void) | undefined;

  private record(method: string, kind: Check['kind'], name: string, permission: Permission): void {
    this.checks.push({ method, kind, name, permission });
  }

  async assertExchange(name: string, _type: string, options: { arguments?: Record<string, unknown> } = {}): Promise<void> {
    this.record('exchange.declare', 'exchange', name, 'configure');
    const alternate = options.arguments?.['alternate-exchange'];
    if (typeof alternate === 'string') {
      this.record('exchange.declare alternate-exchange', 'exchange', alternate, 'write');
      this.record('exchange.declare alternate-exchange', 'exchange', name, 'read');
    }
  }

  async assertQueue(name: string, options: { arguments?: Record<string, unknown> } = {}): Promise<{ queue: string }> {
    this.record('queue.declare', 'queue', name, 'configure');
    const deadLetter = options.arguments?.['x-dead-letter-exchange'];
    if (typeof deadLetter === 'string') {
      this.record('queue.declare x-dead-letter-exchange', 'exchange', deadLetter, 'write');
      this.record('queue.declare x-dead-letter-exchange', 'queue', name, 'read');
    }
    return { queue: name };
  }

  async bindQueue(queue: string, exchange: string): Promise<void> {
    this.record('queue.bind', 'queue', queue, 'write');
    this.record('queue.bind', 'exchange', exchange, 'read');
  }

  async checkQueue(queue: string): Promise<{ queue: string; messageCount: number; consumerCount: number }> {
    return { queue, messageCount: 0, consumerCount: 0 };
  }

  async consume(queue: string, onMessage: (message: ConsumeMessage | null) => void): Promise<{ consumerTag: string }> {
    this.record('basic.consume', 'queue', queue, 'read');
    this.consumer = onMessage;
    return { consumerTag: 'recorded' };
  }

  async get(queue: string): Promise<false> {
    this.record('basic.get', 'queue', queue, 'read');
    return false;
  }

  publish(exchange: string, _key: string, _body: Buffer, _options: unknown, confirmed?: (error: unknown) => void): boolean {
    this.record('basic.publish', 'exchange', exchange === '' ? 'amq.default' : exchange, 'write');
    confirmed?.(null);
    return true;
  }

  async prefetch(): Promise<void> {}
  ack(): void {}
  nack(): void {}
  once(): this {
    return this;
  }
  on(): this {
    return this;
  }
  async close(): Promise<void> {}
}

/** A connection pool whose every channel is the recording one. */
function recordingPool(channel: RecordingChannel): ConnectionPool {
  const pool = {
    blocked: undefined,
    openChannel: async () => channel,
    openConfirmChannel: async () => channel,
  };
  return pool as unknown as ConnectionPool;
}

/** User ids that together use every character a user id may have, and the longest one. */
const USERS = ['alice', 'a', '0', 'Bob.Smith@example.com', 'tenant:42:user-7', 'under_score', '.', '..x', '-', 'x'.repeat(128)];

function settingsFor(queueType: QueueType): QueueSettings {
  return { queueType, queueMaxLength: 10_000, queueDeliveryLimit: 20 };
}

/** Everything the relay does on the broker, for both queue types, as permission checks. */
async function relayChecks(): Promise<Check[]> {
  const checks: Check[] = [];
  for (const queueType of ['quorum', 'classic'] as const) {
    const settings = settingsFor(queueType);
    const channel = new RecordingChannel();
    const open = async () => channel as unknown as Channel;
    const pool = recordingPool(channel);
    // At start: the shared topology.
    await declareSharedTopology(open, settings);
    // A user's first connection on a node: provision and consume its inbox (and sync acks), and
    // dead-letter a message (a copy with its reason published to inbox.dlx).
    const deadLetters = new DeadLetterPublisher({ pool, timeoutMs: 1_000 });
    const consumers = createInboxConsumerFactory(pool, settings, silentLogger(), 'node-1', { publish: deadLetters.publish });
    for (const user of USERS) {
      const handle = await consumers(user, 10, { onDelivery: () => undefined, onLost: () => undefined });
      channel.consumer?.({
        fields: { routingKey: user, deliveryTag: 1, redelivered: false, exchange: INBOX_EXCHANGE, consumerTag: 'recorded' },
        properties: { messageId: `dl-${user}`, headers: {} },
        content: Buffer.from('{}'),
      } as unknown as ConsumeMessage);
      handle.reject(1, false, 'client-nack');
      await handle.sync();
      await handle.close();
      await provisionInbox(open, user, settings);
    }
    // Delivery receipts: published to inbox.receipts with the user as routing key.
    const receipts = new ReceiptPublisher({ pool, timeoutMs: 1_000, nodeId: 'node-1' });
    await receipts.publish(USERS.map((user) => ({ messageId: `r-${user}`, user, seq: 1, epoch: 'e', outcome: 'acked' as const, at: 1 })));
    // Producer-side paths the relay runs: the publisher probe and provisioned publishes.
    const producer = new Producer({ url: 'amqp://unused', pool, provision: settings, logger: silentLogger() });
    await producer.touch();
    for (const user of USERS.slice(0, 3)) await producer.publish(user, { hello: 'world' });
    // The unrouted mover: consumes inbox.unrouted, provisions the user, republishes through the producer.
    const moved: string[] = [];
    const mover = new UnroutedMover({
      pool,
      publish: (exchange, routingKey, body, properties) => {
        moved.push(routingKey);
        return producer.publishRaw(exchange, routingKey, body, properties);
      },
      publishDeadLetter: deadLetters.publish,
      settings,
      provisionRatePerSec: 1_000,
      logger: silentLogger(),
    });
    await mover.start();
    const message = {
      fields: { routingKey: 'late-user', deliveryTag: 1, redelivered: false, exchange: INBOX_EXCHANGE, consumerTag: 'recorded' },
      properties: { messageId: 'm-1', contentType: 'application/json', headers: {} },
      content: Buffer.from('{}'),
    } as unknown as ConsumeMessage;
    channel.consumer?.(message);
    await vi.waitFor(() => expect(moved).toEqual(['late-user']));
    await mover.stop();
    await producer.close();
    checks.push(...channel.checks);
  }
  return checks;
}

function describeCheck(check: Check): string {
  return `${check.permission} on ${check.kind} ${check.name} (${check.method})`;
}

describe('the relay user in ops/rabbitmq/definitions.json', () => {
  const relay = permissionsOf(RELAY_USER);

  beforeEach(() => {
    vi.useFakeTimers();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('is granted every permission check the relay makes', async () => {
    const checks = await relayChecks();
    const refused = checks.filter((check) => !allows(relay, check.permission, check.name)).map(describeCheck);
    expect([...new Set(refused)]).toEqual([]);
    // The recording saw every name of src/amqp/topology.ts and every kind of check.
    const names = new Set(checks.map((check) => `${check.kind} ${check.name}`));
    for (const exchange of [INBOX_EXCHANGE, UNROUTED_EXCHANGE, DEAD_LETTER_EXCHANGE, RECEIPTS_EXCHANGE, 'amq.default'])
      expect(names.has(`exchange ${exchange}`), exchange).toBe(true);
    for (const queue of [UNROUTED_QUEUE, DEAD_LETTER_QUEUE, ...USERS.map(inboxQueueName), inboxQueueName('late-user')])
      expect(names.has(`queue ${queue}`), queue).toBe(true);
    expect(new Set(checks.map((check) => check.permission))).toEqual(new Set(['configure', 'write', 'read']));
  });

  it('lets every name of topology.ts through all three patterns, and amq.default through write only', () => {
    const relayNames = [
      INBOX_EXCHANGE,
      UNROUTED_EXCHANGE,
      UNROUTED_QUEUE,
      DEAD_LETTER_EXCHANGE,
      DEAD_LETTER_QUEUE,
      RECEIPTS_EXCHANGE,
      ...USERS.map(inboxQueueName),
    ];
    for (const name of relayNames) {
      for (const permission of ['configure', 'write', 'read'] as const)
        expect(allows(relay, permission, name), `${permission} ${name}`).toBe(true);
    }
    expect(allows(relay, 'write', 'amq.default')).toBe(true);
    expect(allows(relay, 'configure', 'amq.default')).toBe(false);
    expect(allows(relay, 'read', 'amq.default')).toBe(false);
  });

  it('refuses names of other applications and of the broker', () => {
    const foreign = [
      '',
      'amq.direct',
      'amq.topic',
      'amq.fanout',
      'amq.headers',
      'amq.gen-JzTY20BRgKO-HjmUJj0wLg',
      'amq.rabbitmq.reply-to',
      'amq_default',
      'amqxdefault',
      'orders',
      'orders.inbox',
      'orders.inbox.alice',
      'inboxes',
      'inbox-archive',
      'inbox_alice',
      'inbox.',
      'inbox.alice bob',
      'inbox.alice/bob',
      'inbox.alice#',
      'xinbox.alice',
      'my.inbox',
    ];
    for (const name of foreign) {
      for (const permission of ['configure', 'write', 'read'] as const)
        expect(allows(relay, permission, name), `${permission} "${name}"`).toBe(false);
    }
  });

  it('has no management access and exists in the vhost the relays use', () => {
    expect(tagsOf(RELAY_USER)).toEqual([]);
    expect(relay.vhost).toBe('/');
    for (const permission of ['configure', 'write', 'read'] as const) {
      expect(relay[permission], permission).toMatch(/^\^.*\$$/);
      expect(relay[permission], permission).not.toBe('.*');
    }
  });
});

describe('the operator user in ops/rabbitmq/definitions.json', () => {
  it('is a separate administrator for the management UI and the operator commands', () => {
    expect(tagsOf(OPERATOR_USER)).toEqual(['administrator']);
    expect(permissionsOf(OPERATOR_USER)).toMatchObject({ vhost: '/', configure: '.*', write: '.*', read: '.*' });
    expect(definitions.users.map((user) => user.name).sort()).toEqual([OPERATOR_USER, RELAY_USER].sort());
  });
});

describe('ops/k8s/secret.example.yaml', () => {
  it('gives the rabbitmqctl set_permissions line for the relay user with the patterns of definitions.json', () => {
    const line = text('ops/k8s/secret.example.yaml')
      .split('\n')
      .find((candidate) => candidate.includes('rabbitmqctl set_permissions'));
    expect(line, 'a rabbitmqctl set_permissions line').toBeDefined();
    const quoted = [...line!.matchAll(/'([^']*)'/g)].map((match) => match[1]);
    const relay = permissionsOf(RELAY_USER);
    expect(quoted).toEqual([relay.configure, relay.write, relay.read]);
    expect(line).toMatch(/set_permissions -p \S+ \S+ '/);
  });
});
