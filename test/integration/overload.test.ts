/**
 * Admission control and per-connection limits: a connection flood past the limits is refused
 * with 1013 and retry-after values spread out; a frame flood closes with 1008; event-loop lag
 * sheds new connections; a client that never reads keeps relay memory bounded and does not
 * slow other users; a client that makes no ack progress is closed with a resumable code and its
 * messages go back to RabbitMQ in order.
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Producer } from '../../src/amqp/producer.js';
import { parseRetryAfterMs } from '../../src/protocol/close-codes.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import { waitUntil } from '../../src/wait-until.js';
import { RawClient, msgs } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function relayWith(env: Record<string, string>): Promise<{ relay: TestRelay; producer: Producer }> {
  const relay = await startTestRelay(testConfig(env));
  const producer = testProducer(relay.config);
  cleanups.push(async () => {
    await producer.close();
    await relay.stop();
  });
  return { relay, producer };
}

describe('overload', () => {
  it('refuses a connection flood past the rate limit with 1013 and spread-out retry-after values', async () => {
    const { relay } = await relayWith({ CONNECTION_RATE_PER_SEC: '5', CONNECTION_BURST: '10' });
    const attempts = await Promise.all(Array.from({ length: 60 }, () => RawClient.connect(relay.url)));
    const refused: number[] = [];
    let accepted = 0;
    await Promise.all(
      attempts.map(async (client) => {
        const outcome = await Promise.race([client.closed, new Promise<undefined>((resolve) => setTimeout(resolve, 1_000))]);
        if (outcome?.code === 1013) refused.push(parseRetryAfterMs(outcome.reason) ?? -1);
        else accepted += 1;
        client.terminate();
      }),
    );
    expect(accepted).toBeGreaterThanOrEqual(10);
    expect(accepted).toBeLessThan(20);
    expect(refused.length).toBe(60 - accepted);
    expect(Math.min(...refused)).toBeGreaterThanOrEqual(1_000);
    // Spread: not the same millisecond for everyone.
    expect(new Set(refused).size).toBeGreaterThan(refused.length / 2);
    expect(Math.max(...refused) - Math.min(...refused)).toBeGreaterThan(300);
  });

  it('refuses connections past the node limit and while too many wait for hello', async () => {
    const { relay } = await relayWith({ MAX_CONNECTIONS: '3', MAX_PENDING_HELLOS: '2' });
    const first = await Promise.all([RawClient.connect(relay.url), RawClient.connect(relay.url)]);
    const third = await RawClient.connect(relay.url);
    const closed = await third.closeCode();
    expect([closed.code, closed.reason]).toEqual([1013, expect.stringContaining('pending-hellos')]);
    for (const client of first) client.send({ type: 'hello', token: token(uid('lim')) });
    await Promise.all(first.map((client) => client.next('welcome')));
    const ok = await RawClient.connect(relay.url);
    ok.send({ type: 'hello', token: token(uid('lim')) });
    await ok.next('welcome');
    const over = await RawClient.connect(relay.url);
    expect((await over.closeCode()).reason).toContain('max-connections');
    for (const client of [...first, ok]) client.close();
  });

  it('closes a hello whose stream is not ready within ATTACH_TIMEOUT_MS with 1013, and serves the retry', async () => {
    const memory = new MemoryStore({ maxCount: 100, maxAgeMs: 60_000 });
    const slowUser = uid('slow');
    // The store does not answer this user's first numbering read until released.
    let release: (() => void) | undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let reads = 0;
    const store = Object.assign(Object.create(memory) as MemoryStore, {
      meta: async (user: string) => {
        if (user === slowUser && (reads += 1) === 1) await held;
        return memory.meta(user);
      },
    });
    const relay = await startTestRelay(testConfig({ ATTACH_TIMEOUT_MS: '300' }), store);
    cleanups.push(() => relay.stop());
    const slow = await RawClient.connect(relay.url);
    slow.send({ type: 'hello', token: token(slowUser) });
    const closed = await slow.closeCode();
    expect(closed.code).toBe(1013);
    expect(closed.reason).toMatch(/^retry-after=\d+ attach-timeout$/);
    // Another user is served meanwhile.
    const other = await RawClient.connect(relay.url);
    other.send({ type: 'hello', token: token(uid('ok')) });
    await other.next('welcome');
    // The first attach completes late and is undone: the stream keeps its consumer (it lingers)
    // with no connection.
    release?.();
    const undone = () => {
      const stream = relay.relay.registry.get(slowUser);
      return stream !== undefined && stream.connectionCount === 0 && stream.snapshot()['consumer'] === true;
    };
    await waitUntil(undone, { timeoutMs: 10_000, intervalMs: 20 });
    expect(relay.relay.registry.get(slowUser)?.snapshot()).toMatchObject({ consumer: true, lingering: true, connections: [] });
    // The retry gets the stream.
    const retry = await RawClient.connect(relay.url);
    retry.send({ type: 'hello', token: token(slowUser) });
    expect((await retry.next('welcome')).type).toBe('welcome');
    expect(relay.relay.registry.get(slowUser)?.connectionCount).toBe(1);
    expect(relay.relay.connectionCount).toBe(2);
    other.close();
    retry.close();
  });

  it('sheds new connections while the event loop lags', async () => {
    const { relay } = await relayWith({ EVENT_LOOP_LAG_SHED_MS: '100' });
    const busyUntil = Date.now() + 400;
    while (Date.now() < busyUntil) {
      // Block the relay's event loop (it runs in this process).
    }
    // The lag monitor's overdue tick records the delay; connect within its window.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const client = await RawClient.connect(relay.url);
    const closed = await client.closeCode();
    expect([closed.code, closed.reason]).toEqual([1013, expect.stringContaining('event-loop-lag')]);
  });

  it('closes a connection that floods frames with 1008', async () => {
    const { relay } = await relayWith({ FRAME_RATE_PER_SEC: '10', FRAME_BURST: '20' });
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(uid('flood')) });
    await client.next('welcome');
    for (let i = 0; i < 100; i += 1) client.send({ type: 'ping', id: i });
    const closed = await client.closeCode();
    expect([closed.code, closed.reason]).toEqual([1008, expect.stringContaining('rate limit')]);
  });

  it('does not charge acks that move the connection forward, and charges stale ones', async () => {
    const { relay, producer } = await relayWith({ FRAME_RATE_PER_SEC: '10', FRAME_BURST: '20', WINDOW_DEFAULT: '10' });
    const user = uid('acker');
    await Promise.all(Array.from({ length: 100 }, (_, n) => producer.publish(user, { n })));
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(user) });
    await client.next('welcome');
    // 100 acks within about a second: ten times the frame rate, five times the burst.
    for (let seq = 1; seq <= 100; seq += 1) {
      const msg = await client.next('msg');
      expect(msg.seq).toBe(seq);
      client.send({ type: 'ack', seq });
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(client.closedWith).toBeUndefined();
    // The same ack again and again does not move anything: it is charged like any frame.
    for (let i = 0; i < 100; i += 1) client.send({ type: 'ack', seq: 100 });
    const closed = await client.closeCode();
    expect([closed.code, closed.reason]).toEqual([1008, expect.stringContaining('rate limit')]);
  });

  it('keeps memory bounded for a client that never reads, and other users unaffected', async () => {
    const { relay, producer } = await relayWith({ WINDOW_DEFAULT: '10', WINDOW_MAX: '10', HEARTBEAT_MS: '60000' });
    const stuck = uid('stuck');
    const body = { pad: 'x'.repeat(20_000) };
    await Promise.all(Array.from({ length: 200 }, () => producer.publish(stuck, body)));
    const ws = new WebSocket(relay.url, ['inbox-relay.v1']);
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send(JSON.stringify({ type: 'hello', token: token(stuck) }));
    // Stop reading: the socket's receive buffer fills and the relay's send buffer grows.
    await new Promise((resolve) => setTimeout(resolve, 300));
    (ws as unknown as { _socket: { pause(): void } })._socket.pause();

    const other = uid('other');
    const client = await RawClient.connect(relay.url);
    client.send({ type: 'hello', token: token(other) });
    await client.next('welcome');
    const started = Date.now();
    for (let n = 1; n <= 20; n += 1) await producer.publish(other, { n });
    const got = [];
    for (let i = 0; i < 20; i += 1) {
      const msg = await client.next('msg');
      got.push(msg.seq);
      client.send({ type: 'ack', seq: msg.seq });
    }
    expect(got).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(Date.now() - started).toBeLessThan(10_000);

    // The stuck user's stream holds at most the prefetch in memory; the rest stays in RabbitMQ.
    const stream = relay.relay.registry.get(stuck)!;
    expect(stream.inflightCount).toBeLessThanOrEqual(10);
    const snapshot = stream.snapshot() as { connections: { cursor: number; acked: number }[] };
    expect(snapshot.connections[0]!.cursor - snapshot.connections[0]!.acked).toBeLessThanOrEqual(10);
    client.close();
    ws.terminate();
  });

  it('closes a client that makes no ack progress, and its messages come back in order', async () => {
    const { relay, producer } = await relayWith({ ACK_TIMEOUT_MS: '1000', WINDOW_DEFAULT: '5' });
    const user = uid('slow');
    for (let n = 1; n <= 8; n += 1) await producer.publish(user, { n });
    const lazy = await RawClient.connect(relay.url);
    lazy.send({ type: 'hello', token: token(user) });
    const welcome = await lazy.next('welcome');
    await lazy.next('msg');
    const closed = await lazy.closeCode(10_000);
    expect([closed.code, closed.reason]).toEqual([1013, expect.stringContaining('ack-timeout')]);
    expect(msgs(lazy.frames).map((m) => m.seq)).toEqual([1, 2, 3, 4, 5]);

    const next = await RawClient.connect(relay.url);
    next.send({ type: 'hello', token: token(user), resume: { epoch: welcome.epoch, lastSeq: 0 } });
    const again = [];
    for (let i = 0; i < 5; i += 1) {
      const msg = await next.next('msg');
      again.push([msg.seq, (msg.data as { n: number }).n]);
    }
    expect(again).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [4, 4],
      [5, 5],
    ]);
    next.close();
  });
});
