/**
 * A start-up that fails half-way leaves nothing open. The failure is real: the test gives the
 * relay a vhost of its own in which the `inbox` exchange already exists as a fanout (the relay
 * declares it as direct), so RabbitMQ refuses the topology (406) after the relay has connected
 * to Redis and to RabbitMQ. Afterwards the broker lists no connection in that vhost, the Redis
 * client is ended, and the process holds no more TCP sockets than before.
 */
import { execFile } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, isRelayError } from '../../src/errors.js';
import { RelayEvents } from '../../src/events.js';
import { createLogger } from '../../src/log.js';
import { backgroundClock } from '../../src/delivery/background-clock.js';
import { startDependencies } from '../../src/server/dependencies.js';
import { startRelay } from '../../src/server/relay.js';
import type { RedisStore } from '../../src/store/redis-store.js';
import { rabbitmqUrl, testConfig, uid } from '../helpers/relay.js';

const run = promisify(execFile);

async function rabbitmqctl(...args: string[]): Promise<string> {
  const { stdout } = await run('rabbitmqctl', ['-q', ...args], { timeout: 90_000 });
  return stdout;
}

/** Names of the AMQP connections the broker has open in `vhost`. */
async function connectionsIn(vhost: string): Promise<string[]> {
  const lines = (await rabbitmqctl('list_connections', '--no-table-headers', 'vhost', 'name')).split('\n');
  return lines.filter((line) => line.split('\t')[0] === vhost);
}

/** How many of the process's handles are of these kinds (TCP sockets, timers). */
function handles(kinds: readonly string[]): number {
  return process.getActiveResourcesInfo().filter((resource) => kinds.includes(resource)).length;
}

const SOCKETS = ['TCPSocketWrap', 'TCPConnectWrap'];

/** Waits (bounded) until the process holds at most `count` handles of `kinds`; returns how many it holds. */
async function handlesSettle(kinds: readonly string[], count: number): Promise<number> {
  for (let attempt = 0; attempt < 50 && handles(kinds) > count; attempt += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  return handles(kinds);
}

/** The Redis client's status once it reached 'end' (or after a bounded wait, whatever it is then). */
async function redisStatusSettles(store: RedisStore | undefined): Promise<string | undefined> {
  for (let attempt = 0; attempt < 50 && store && store.redis.status !== 'end'; attempt += 1)
    await new Promise((resolve) => setTimeout(resolve, 100));
  return store?.redis.status;
}

describe('relay start-up that fails half-way', () => {
  const vhost = `relay-test-${uid('vhost')}`;
  const url = `${rabbitmqUrl()}/${encodeURIComponent(vhost)}`;

  beforeAll(async () => {
    await rabbitmqctl('add_vhost', vhost);
    await rabbitmqctl('set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*');
    const connection = await amqp.connect(url);
    try {
      const channel = await connection.createChannel();
      await channel.assertExchange('inbox', 'fanout', { durable: true });
    } finally {
      await connection.close();
    }
  });

  afterAll(async () => {
    await rabbitmqctl('delete_vhost', vhost);
  });

  it('closes the Redis client and the AMQP connections it opened, and rejects with the topology error', async () => {
    const baseline = handles(SOCKETS);
    const config = testConfig({ RABBITMQ_URL: url, AMQP_CONNECTION_NAME: uid('startfail') });
    const events = new RelayEvents();
    const opened: string[] = [];
    events.on('redis-connection', (state) => opened.push(`redis ${state}`));
    events.on('amqp-connection', (state) => opened.push(`amqp ${state}`));
    let redis: RedisStore | undefined;
    const starting = startDependencies(config, {
      logger: createLogger('silent'),
      events,
      clock: backgroundClock,
      onRedisStore: (store) => {
        redis = store;
      },
    });

    const error = await starting.then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(isRelayError(error, ErrorCode.topology)).toBe(true);
    expect((error as Error).message).toMatch(
      /^cannot declare exchanges inbox\/inbox\.unrouted\/inbox\.dlx\/inbox\.topics\/inbox\.presence\/inbox\.receipts .*PRECONDITION_FAILED/,
    );
    // It did get as far as connecting to both, so there was something to close.
    expect(opened).toContain('redis connected');
    expect(opened).toContain('amqp connected');
    // quit() is answered before the socket is gone; 'end' follows when it is.
    expect(await redisStatusSettles(redis)).toBe('end');
    expect(await connectionsIn(vhost)).toEqual([]);
    expect(await handlesSettle(SOCKETS, baseline)).toBeLessThanOrEqual(baseline);
  });

  it('stops the Redis client that could not connect (it would retry for ever) and opens nothing on RabbitMQ', async () => {
    // A server that hangs up on every connection, so each attempt of the Redis client is seen.
    const attempts: number[] = [];
    const hangUp = createServer((socket) => {
      attempts.push(Date.now());
      socket.destroy();
    });
    await new Promise<void>((resolve) => hangUp.listen(0, '127.0.0.1', resolve));
    const port = (hangUp.address() as AddressInfo).port;
    try {
      const config = testConfig({ REDIS_URL: `redis://127.0.0.1:${port}`, RABBITMQ_URL: url, AMQP_CONNECTION_NAME: uid('startfail') });
      const error = await startDependencies(config, {
        logger: createLogger('silent'),
        events: new RelayEvents(),
        clock: backgroundClock,
      }).then(
        () => undefined,
        (failure: unknown) => failure,
      );
      expect(isRelayError(error, ErrorCode.storeUnavailable)).toBe(true);
      expect((error as Error).message).toMatch(
        new RegExp(`^cannot connect to Redis at 127\\.0\\.0\\.1:${port}: .*Connection is closed\\.`),
      );
      const seen = attempts.length;
      expect(seen).toBeGreaterThan(0);
      // A client left running retries within 200-800 ms (its backoff); a stopped one never does.
      const retried = new Promise<boolean>((resolve) => hangUp.once('connection', () => resolve(true)));
      expect(await Promise.race([retried, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 2_000))])).toBe(false);
      expect(attempts.length).toBe(seen);
      expect(await connectionsIn(vhost)).toEqual([]);
    } finally {
      hangUp.close();
    }
  });

  it('names Redis, its host and the socket error when nothing listens at REDIS_URL', async () => {
    // A port that was free a moment ago: connecting to it is refused.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise((resolve) => probe.close(resolve));
    const config = testConfig({
      REDIS_URL: `redis://:secret-pw@127.0.0.1:${port}`,
      RABBITMQ_URL: url,
      AMQP_CONNECTION_NAME: uid('startfail'),
    });
    const error = await startDependencies(config, {
      logger: createLogger('silent'),
      events: new RelayEvents(),
      clock: backgroundClock,
    }).then(
      () => undefined,
      (failure: unknown) => failure,
    );
    expect(isRelayError(error, ErrorCode.storeUnavailable)).toBe(true);
    expect((error as Error).message).toBe(
      `cannot connect to Redis at 127.0.0.1:${port}: connect ECONNREFUSED 127.0.0.1:${port} (Connection is closed.)`,
    );
    expect((error as Error).message).not.toContain('secret-pw');
  });

  it('makes startRelay reject with the same error and hold no socket afterwards', async () => {
    const baseline = handles(SOCKETS);
    const config = testConfig({ RABBITMQ_URL: url, AMQP_CONNECTION_NAME: uid('startfail') });
    const error = await startRelay(config, { logger: createLogger('silent') }).then(
      async (relay) => {
        await relay.drain();
        return undefined;
      },
      (failure: unknown) => failure,
    );
    expect(isRelayError(error, ErrorCode.topology)).toBe(true);
    expect(await connectionsIn(vhost)).toEqual([]);
    expect(await handlesSettle(SOCKETS, baseline)).toBeLessThanOrEqual(baseline);
  });
});
