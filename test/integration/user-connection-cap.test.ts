/**
 * The per-user connection cap (MAX_CONNECTIONS_PER_USER) against an in-process relay: the
 * connection past it is closed after its hello with 1008 and a fixed reason while the user's
 * other connections keep receiving; a closed connection frees its slot; other users are not
 * affected.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../../src/wait-until.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, testProducer, token, uid } from '../helpers/relay.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function welcomed(url: string, user: string): Promise<RawClient> {
  const client = await RawClient.connect(url);
  client.send({ type: 'hello', token: token(user) });
  await client.next('welcome');
  return client;
}

describe('per-user connection cap', () => {
  it('refuses the 11th connection of a user with 1008, keeps the first 10 served, and frees a slot on close', async () => {
    const relay = await startTestRelay(testConfig({ MAX_CONNECTIONS_PER_USER: '10' }));
    const producer = testProducer(relay.config);
    const clients: RawClient[] = [];
    cleanups.push(async () => {
      for (const client of clients) client.terminate();
      await producer.close();
      await relay.stop();
    });
    const user = uid('cap');
    const other = uid('cap-other');
    for (let i = 0; i < 10; i += 1) clients.push(await welcomed(relay.url, user));

    const over = await RawClient.connect(relay.url);
    clients.push(over);
    over.send({ type: 'hello', token: token(user) });
    const refused = await over.closeCode();
    expect([refused.code, refused.reason]).toEqual([1008, 'too many connections for this user']);
    expect(over.frames.map((frame) => frame.type)).toEqual([]);
    expect(relay.relay.registry.get(user)?.connectionCount).toBe(10);

    // Another user is not affected.
    const otherClient = await welcomed(relay.url, other);
    clients.push(otherClient);

    // The first ten keep receiving: every one of them gets the message.
    await producer.publish(user, { n: 1 });
    const first = await Promise.all(clients.slice(0, 10).map((client) => client.next('msg')));
    expect(first.map((msg) => msg.seq)).toEqual(Array.from({ length: 10 }, () => first[0]!.seq));

    // One leaves: its slot is free for the next attempt.
    const leaving = clients[0]!;
    leaving.close();
    await leaving.closeCode();
    await waitUntil(() => relay.relay.registry.get(user)?.connectionCount === 9, {
      timeoutMs: 5_000,
      what: 'the closed connection to detach',
    });
    const again = await welcomed(relay.url, user);
    clients.push(again);
    expect(relay.relay.registry.get(user)?.connectionCount).toBe(10);

    // And the cap holds again.
    const overAgain = await RawClient.connect(relay.url);
    clients.push(overAgain);
    overAgain.send({ type: 'hello', token: token(user) });
    expect((await overAgain.closeCode()).code).toBe(1008);
    expect(relay.relay.connectionCount).toBe(11);
  });

  it('has no per-user limit at MAX_CONNECTIONS_PER_USER=0', async () => {
    const relay = await startTestRelay(testConfig({ MAX_CONNECTIONS_PER_USER: '0' }));
    const clients: RawClient[] = [];
    cleanups.push(async () => {
      for (const client of clients) client.terminate();
      await relay.stop();
    });
    const user = uid('nocap');
    for (let i = 0; i < 12; i += 1) clients.push(await welcomed(relay.url, user));
    expect(relay.relay.registry.get(user)?.connectionCount).toBe(12);
  });
});
