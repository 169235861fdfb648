/**
 * The client SDK (Node, `ws` loaded on demand) against the real relay, RabbitMQ and Redis:
 * connection cuts, a frozen connection, a relay restart on the same port, the state store
 * losing the user, handler failures, token refresh and resuming from a stored position. In
 * every case the handler sees each message in order and never the same seq twice in an epoch.
 */
import net from 'node:net';
import { once } from 'node:events';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
import type { UserPresence } from '../../src/presence/presence-store.js';
import { signDevToken } from '../../src/server/auth.js';
import { waitUntil } from '../../src/wait-until.js';
import {
  InboxClient,
  MemoryPositionStore,
  requeueUpTo,
  type DisconnectEvent,
  type InboxClientOptions,
  type InboxMessage,
  type ResetEvent,
} from '../../src/client/index.js';
import {
  TEST_SECRET,
  rabbitmqUrl,
  redisUrl,
  startTestRelay,
  testConfig,
  testProducer,
  token,
  uid,
  type TestRelay,
} from '../helpers/relay.js';

/** A TCP proxy in front of the relay that can cut or freeze the connections through it. */
class TcpProxy {
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket; frozen: boolean }>();

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<TcpProxy> {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    // No client can connect before the port is known, so the handler goes on once the proxy exists.
    const proxy = new TcpProxy(server, (server.address() as net.AddressInfo).port);
    server.on('connection', (client: net.Socket) => proxy.accept(client, targetPort));
    return proxy;
  }

  private accept(client: net.Socket, targetPort: number): void {
    const upstream = net.connect(targetPort, '127.0.0.1');
    const pair = { client, upstream, frozen: false };
    this.#pairs.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = (): void => {
      this.#pairs.delete(pair);
      // A frozen pair models a dead path: nothing, not even a close, gets through.
      if (pair.frozen) return;
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', () => undefined);
      socket.on('close', end);
    }
  }

  /** Drops every connection through the proxy (the client sees 1006). */
  cut(): void {
    for (const { client, upstream } of this.#pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
  }

  /** Stops forwarding anything on the current connections, without closing them. */
  freeze(): void {
    for (const pair of this.#pairs) {
      pair.frozen = true;
      pair.client.unpipe(pair.upstream);
      pair.upstream.unpipe(pair.client);
      pair.client.pause();
      pair.upstream.pause();
    }
  }

  async close(): Promise<void> {
    for (const { client, upstream } of this.#pairs) {
      client.destroy();
      upstream.destroy();
    }
    await new Promise((resolve) => this.server.close(resolve));
  }
}

interface Handled {
  epoch: string;
  seq: number;
  id: string;
  n: number;
}

/** A client whose handler records what it saw and every breach of order or dedupe. */
function recordingClient(options: Partial<InboxClientOptions> & { url: string; token: InboxClientOptions['token'] }) {
  const client = new InboxClient({ reconnectInitialDelayMs: 200, reconnectMaxDelayMs: 1_000, ...options });
  const handled: Handled[] = [];
  const violations: string[] = [];
  const disconnects: DisconnectEvent[] = [];
  const resets: ResetEvent[] = [];
  const lastSeq = new Map<string, number>();
  client.on('message', async (message: InboxMessage) => {
    const previous = lastSeq.get(message.epoch);
    if (previous !== undefined && message.seq !== previous + 1) {
      violations.push(`${message.epoch}: seq ${message.seq} after ${previous}`);
    }
    lastSeq.set(message.epoch, message.seq);
    handled.push({ epoch: message.epoch, seq: message.seq, id: message.id, n: (message.data as { n: number }).n });
    await new Promise((resolve) => setTimeout(resolve, 2));
  });
  client.on('disconnect', (event) => disconnects.push(event));
  client.on('reset', (event) => resets.push(event));
  return { client, handled, violations, disconnects, resets };
}

/** Waits until `predicate` holds; throws, saying `what` was awaited, after `timeoutMs`. */
async function until(predicate: () => boolean, what: string | (() => string), timeoutMs = 30_000): Promise<void> {
  await waitUntil(predicate, { timeoutMs, intervalMs: 20, what });
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('InboxClient against the relay', () => {
  let relay: TestRelay;
  let producer: Producer;
  const clients: InboxClient[] = [];
  const proxies: TcpProxy[] = [];
  const extraRelays: TestRelay[] = [];

  beforeAll(async () => {
    relay = await startTestRelay(testConfig({ WINDOW_DEFAULT: '8' }));
    producer = testProducer(relay.config);
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.close();
    for (const proxy of proxies.splice(0)) await proxy.close();
    for (const extra of extraRelays.splice(0)) await extra.stop();
  });
  afterAll(async () => {
    await producer.close();
    await relay.stop();
  });

  async function publish(user: string, from: number, to: number): Promise<string[]> {
    const ids: string[] = [];
    for (let n = from; n <= to; n += 1) ids.push((await producer.publish(user, { n })).messageId);
    return ids;
  }

  it('delivers every message once and in order across connection cuts', async () => {
    const user = uid('sdk-cut');
    const proxy = await TcpProxy.start(relay.relay.port);
    proxies.push(proxy);
    const c = recordingClient({ url: `ws://127.0.0.1:${proxy.port}`, token: () => token(user) });
    clients.push(c.client);
    await c.client.connect();
    const publishing = publish(user, 1, 80);
    for (const mark of [15, 35, 55]) {
      await until(() => c.handled.length >= mark, `${mark} handled`);
      proxy.cut();
    }
    await publishing;
    await until(() => c.handled.length >= 80, 'all 80 handled');
    expect(c.handled.map((h) => h.n)).toEqual(range(1, 80));
    expect(c.handled.map((h) => h.seq)).toEqual(range(1, 80));
    expect(new Set(c.handled.map((h) => h.epoch)).size).toBe(1);
    expect(c.violations).toEqual([]);
    expect(c.disconnects.filter((d) => d.code === 1006 && d.willReconnect)).toHaveLength(3);
    expect(c.client.stats().connections).toBe(4);
  });

  it("sends its device label in hello, and the user's presence shows it on each connection", async () => {
    const user = uid('sdk-device');
    const c = recordingClient({ url: relay.url, token: () => token(user), device: 'sdk-phone' });
    clients.push(c.client);
    await c.client.connect();
    const reader = new Producer({ url: rabbitmqUrl(), redis: redisUrl(), redisKeyPrefix: relay.config.redisKeyPrefix });
    try {
      let found: UserPresence | undefined;
      await waitUntil(async () => (found = await reader.presence(user)).online, { timeoutMs: 1_000, what: 'online' });
      expect(found!.connections).toMatchObject([{ node: relay.config.nodeId, device: 'sdk-phone' }]);
    } finally {
      await reader.close();
    }
  });

  it('notices a frozen connection within two heartbeats and resumes on a new one', async () => {
    const heartbeatMs = 500;
    const quick = await startTestRelay(testConfig({ WINDOW_DEFAULT: '8', HEARTBEAT_MS: String(heartbeatMs) }));
    extraRelays.push(quick);
    const user = uid('sdk-frozen');
    const proxy = await TcpProxy.start(quick.relay.port);
    proxies.push(proxy);
    const c = recordingClient({ url: `ws://127.0.0.1:${proxy.port}`, token: () => token(user) });
    clients.push(c.client);
    await c.client.connect();
    await publish(user, 1, 10);
    await until(() => c.handled.length >= 10, '10 handled');
    // Let a few relay pings through first, so the client has seen the heartbeat running.
    await new Promise((resolve) => setTimeout(resolve, heartbeatMs * 2));
    const frozenAt = Date.now();
    proxy.freeze();
    await until(() => c.disconnects.length > 0, 'the dead connection noticed', 5_000);
    const noticedAfterMs = Date.now() - frozenAt;
    expect(c.disconnects[0]).toMatchObject({ code: 1006, reason: 'heartbeat timeout', willReconnect: true });
    expect(noticedAfterMs).toBeLessThanOrEqual(2 * heartbeatMs + 250);
    const producerQuick = testProducer(quick.config);
    try {
      for (let n = 11; n <= 20; n += 1) await producerQuick.publish(user, { n });
    } finally {
      await producerQuick.close();
    }
    await until(() => c.handled.length >= 20, 'all 20 handled');
    expect(c.handled.map((h) => h.n)).toEqual(range(1, 20));
    expect(c.violations).toEqual([]);
  });

  it('resumes across a relay restart on the same port without losing or repeating a message', async () => {
    const user = uid('sdk-restart');
    const first = await startTestRelay(testConfig({ WINDOW_DEFAULT: '8' }));
    const config = { ...first.config, port: first.relay.port };
    let current: TestRelay = first;
    const c = recordingClient({ url: first.url, token: () => token(user) });
    clients.push(c.client);
    try {
      await c.client.connect();
      await publish(user, 1, 30);
      await until(() => c.handled.length >= 10, '10 handled');
      await first.stop();
      // Published while no relay runs: RabbitMQ holds them.
      await publish(user, 31, 50);
      current = await startTestRelay(config);
      await until(() => c.handled.length >= 50, 'all 50 handled');
    } finally {
      extraRelays.push(current);
    }
    expect(c.handled.map((h) => h.n)).toEqual(range(1, 50));
    expect(c.handled.map((h) => h.seq)).toEqual(range(1, 50));
    expect(c.violations).toEqual([]);
    expect(c.resets).toEqual([]);
    expect(c.disconnects.map((d) => d.code)).toContain(1012);
  });

  it('moves to a new epoch when the state store loses the user, and still processes every message', async () => {
    const user = uid('sdk-lost');
    const c = recordingClient({ url: relay.url, token: () => token(user) });
    clients.push(c.client);
    await c.client.connect();
    const ids = await publish(user, 1, 20);
    await until(() => c.handled.length >= 10, '10 handled');
    await relay.relay.store.forget(user);
    ids.push(...(await publish(user, 21, 40)));
    await until(() => new Set(c.handled.map((h) => h.id)).size >= 40 && c.resets.length > 0, 'every message and a reset');
    expect(c.resets[0]).toMatchObject({ lastSeq: 0 });
    const epochs = [...new Set(c.handled.map((h) => h.epoch))];
    expect(epochs.length).toBeGreaterThanOrEqual(2);
    expect(epochs.at(-1)).toBe(c.resets.at(-1)?.epoch);
    // Never the same seq twice, never out of order, within an epoch.
    expect(c.violations).toEqual([]);
    for (const epoch of epochs) {
      const seqs = c.handled.filter((h) => h.epoch === epoch).map((h) => h.seq);
      expect(new Set(seqs).size).toBe(seqs.length);
      // Publish order holds within an epoch too.
      const ns = c.handled.filter((h) => h.epoch === epoch).map((h) => h.n);
      expect(ns).toEqual([...ns].sort((a, b) => a - b));
    }
    // At least once: nothing published is missing.
    const seen = new Set(c.handled.map((h) => h.id));
    expect(ids.filter((id) => !seen.has(id))).toEqual([]);
  });

  it('requeues a failed message and dead-letters one that keeps failing, then moves on', async () => {
    const user = uid('sdk-nack');
    const client = new InboxClient({ url: relay.url, token: () => token(user), nackPolicy: requeueUpTo(2) });
    clients.push(client);
    const attempts: string[] = [];
    const deadLettered: number[] = [];
    const relayDeadLetters: string[] = [];
    const onDeadLetter = (reason: string): void => void relayDeadLetters.push(reason);
    relay.relay.events.on('dead-lettered', onDeadLetter);
    let failedOnce = false;
    client.on('message', (message) => {
      const n = (message.data as { n: number }).n;
      attempts.push(`${n}${message.redelivered ? 'r' : ''}`);
      if (n === 3 && !failedOnce) {
        failedOnce = true;
        throw new Error('transient');
      }
      if (n === 5) throw new Error('poison');
    });
    client.on('deadLetter', (event) => void deadLettered.push((event.message.data as { n: number }).n));
    const errors: string[] = [];
    client.on('error', (error) => void errors.push(`${error.code}: ${error.message}`));
    try {
      await client.connect();
      await publish(user, 1, 8);
      await until(
        () => Number.parseInt(attempts.at(-1) ?? '0', 10) === 8,
        () =>
          `message 8 handled: ${JSON.stringify({ attempts, state: client.state, position: client.position, stats: client.stats(), errors })}`,
      );
    } finally {
      relay.relay.events.off('dead-lettered', onDeadLetter);
    }
    expect(attempts.map((a) => Number.parseInt(a, 10))).toEqual([1, 2, 3, 3, 4, 5, 5, 5, 6, 7, 8]);
    // Replays are marked; so may be seqs the relay had sent before it rewound (4 after 3, 6 after 5).
    expect(attempts.slice(0, 4)).toEqual(['1', '2', '3', '3r']);
    expect([attempts[6], attempts[7]]).toEqual(['5r', '5r']);
    expect(deadLettered).toEqual([5]);
    expect(relayDeadLetters).toEqual(['client-nack']);
    expect(client.stats()).toMatchObject({ requeued: 3, deadLettered: 1, processed: 7 });
    await until(() => client.position?.lastSeq === 8, 'position 8');
  });

  it('refreshes a short-lived token on the open connection', async () => {
    const user = uid('sdk-refresh');
    const reasons: string[] = [];
    const client = new InboxClient({
      url: relay.url,
      tokenRefreshLeadMs: 3_000,
      token: ({ reason }) => {
        reasons.push(reason);
        return signDevToken(user, TEST_SECRET, { expiresInSeconds: 6 });
      },
    });
    clients.push(client);
    const disconnects: DisconnectEvent[] = [];
    client.on('disconnect', (event) => disconnects.push(event));
    const handled: number[] = [];
    client.on('message', (message) => void handled.push((message.data as { n: number }).n));
    await client.connect();
    // 10 s on 6 s tokens: the first token expires while the connection is still in use.
    for (let n = 1; n <= 10; n += 1) {
      await producer.publish(user, { n });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
    await until(() => handled.length >= 10, 'all 10 handled');
    expect(disconnects).toEqual([]);
    expect(client.stats().connections).toBe(1);
    expect(reasons[0]).toBe('connect');
    expect(reasons.filter((reason) => reason === 'refresh').length).toBeGreaterThanOrEqual(2);
    expect(handled).toEqual(range(1, 10));
  });

  it('resumes from a stored position in a new client, and the relay honours the acks', async () => {
    const user = uid('sdk-store');
    const store = new MemoryPositionStore();
    const a = recordingClient({ url: relay.url, token: () => token(user), positionStore: store });
    await a.client.connect();
    await publish(user, 1, 10);
    await until(() => a.handled.length >= 10, '10 handled');
    await a.client.close();
    expect(store.load()).toMatchObject({ lastSeq: 10 });

    await publish(user, 11, 15);
    const b = recordingClient({ url: relay.url, token: () => token(user), positionStore: store });
    clients.push(b.client);
    const opened = await b.client.connect();
    expect(opened).toMatchObject({ resumed: true, recovered: true, lastSeq: 10 });
    await until(() => b.handled.length >= 5, '5 handled');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(b.handled.map((h) => h.n)).toEqual(range(11, 15));
  });

  it.each([
    [
      'signed with another secret',
      4001,
      'invalid token',
      () => signDevToken(uid('sdk-badtoken'), 'not-the-relays-secret-0123456789abcdef'),
    ],
    ['expired', 4008, 'token expired', () => signDevToken(uid('sdk-expired'), TEST_SECRET, { expiresInSeconds: -3600 })],
  ])('rejects connect() and emits error, without retrying, for a fixed token %s', async (_, code, reason, makeToken) => {
    const client = new InboxClient({ url: relay.url, token: makeToken(), reconnectInitialDelayMs: 50 });
    clients.push(client);
    const disconnects: DisconnectEvent[] = [];
    const errors: unknown[] = [];
    client.on('disconnect', (event) => disconnects.push(event));
    client.on('error', (error) => errors.push(error));
    await expect(client.connect()).rejects.toMatchObject({ code: 'RELAY_ERR_TERMINAL_CLOSE', closeCode: code, temporary: false });
    expect(client.state).toBe('closed');
    expect(errors).toHaveLength(1);
    expect(disconnects).toEqual([{ code, reason, willReconnect: false, delayMs: undefined }]);
  });

  it('asks a token provider once more after a refused token, then gives up when that one is refused too', async () => {
    const user = uid('sdk-badprovider');
    const reasons: string[] = [];
    const client = new InboxClient({
      url: relay.url,
      reconnectInitialDelayMs: 50,
      token: ({ reason }) => {
        reasons.push(reason);
        return signDevToken(user, 'not-the-relays-secret-0123456789abcdef');
      },
    });
    clients.push(client);
    const disconnects: DisconnectEvent[] = [];
    client.on('disconnect', (event) => disconnects.push(event));
    await expect(client.connect()).rejects.toMatchObject({ code: 'RELAY_ERR_TERMINAL_CLOSE', closeCode: 4001 });
    expect(reasons).toEqual(['connect', 'rejected']);
    expect(disconnects.map((event) => [event.code, event.willReconnect])).toEqual([
      [4001, true],
      [4001, false],
    ]);
  });

  it("connects with a token provider's second token after the relay refused the first", async () => {
    const user = uid('sdk-secondtoken');
    const reasons: string[] = [];
    const client = new InboxClient({
      url: relay.url,
      reconnectInitialDelayMs: 50,
      token: ({ reason }) => {
        reasons.push(reason);
        return reasons.length === 1 ? signDevToken(user, TEST_SECRET, { expiresInSeconds: -3600 }) : token(user);
      },
    });
    clients.push(client);
    const handled: number[] = [];
    client.on('message', (message) => void handled.push((message.data as { n: number }).n));
    await expect(client.connect()).resolves.toMatchObject({ user });
    expect(reasons).toEqual(['connect', 'expired']);
    await publish(user, 1, 3);
    await until(() => handled.length >= 3, '3 handled');
    expect(handled).toEqual([1, 2, 3]);
  });

  it('closes with an error, without retrying, when the token is for a forbidden subject', async () => {
    const client = new InboxClient({ url: relay.url, token: signDevToken('not a valid id!', TEST_SECRET) });
    clients.push(client);
    const disconnects: DisconnectEvent[] = [];
    client.on('disconnect', (event) => disconnects.push(event));
    await expect(client.connect()).rejects.toMatchObject({ code: 'RELAY_ERR_TERMINAL_CLOSE', closeCode: 4003 });
    expect(client.state).toBe('closed');
    expect(disconnects).toEqual([{ code: 4003, reason: 'token subject is not a valid user id', willReconnect: false, delayMs: undefined }]);
  });
});
