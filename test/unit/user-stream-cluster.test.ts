/**
 * Two nodes' streams of one user, on one memory store and one memory bus: the owner's consumer is
 * a FakeQueue, the other node's consumer waits (single active consumer) and never delivers.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryBusHub, MemoryNodeBus } from '../../src/cluster/memory-node-bus.js';
import type { ConsumerFactory, ConsumerHandle } from '../../src/delivery/consumer.js';
import { UserStream } from '../../src/delivery/user-stream.js';
import { silentLogger } from '../../src/log.js';
import {
  CLUSTER_BEAT_MS,
  FakeQueue,
  FakeSub,
  done,
  elapse,
  newMemory,
  nodeStream,
  settle,
  waitingConsumer,
} from '../helpers/delivery-fakes.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const BEAT_MS = CLUSTER_BEAT_MS;

async function twoNodes() {
  const store = newMemory();
  const hub = new MemoryBusHub();
  const queue = new FakeQueue();
  const owner = nodeStream(store, hub, 'a', (user, prefetch, callbacks) => queue.factory(user, prefetch, callbacks));
  const other = nodeStream(store, hub, 'b', waitingConsumer);
  const phone = new FakeSub(10);
  const laptop = new FakeSub(10);
  await done(owner.attach(phone, undefined));
  await done(other.attach(laptop, undefined));
  await settle();
  return { store, queue, owner, other, phone, laptop };
}

describe('a user stream with a peer on another node', () => {
  it('sends a connection on the other node what the owner numbered, and acks RabbitMQ on its ack', async () => {
    const { queue, other, phone, laptop } = await twoNodes();
    queue.publish(5);
    await settle();
    expect(phone.seqs).toEqual([1, 2, 3, 4, 5]);
    expect(laptop.seqs).toEqual([1, 2, 3, 4, 5]);
    expect(laptop.frames.map((f) => f.n)).toEqual(phone.frames.map((f) => f.n));
    expect(other.ack(laptop, 5)).toBe('ok');
    await settle();
    expect(queue.unacked.size).toBe(0);
    expect(queue.acks.length).toBeGreaterThan(0);
  });

  it('rejects, not acks, a message with a dead-letter request in the store when another node acks past it', async () => {
    const { store, queue, owner, phone } = await twoNodes();
    queue.publish(3);
    await settle();
    expect(phone.seqs).toEqual([1, 2, 3]);
    // The request reached the store, but the bus lost the message that told the owner.
    expect(await store.deadLetter('u1', owner.epoch, 2)).toBe(true);
    owner.peerAcked(3);
    await settle();
    expect(queue.rejected.map((r) => r.requeue)).toEqual([false]);
    expect(queue.unacked.size).toBe(0);
    expect(owner.ackedMark).toBe(3);
  });

  it('dead-letters on the owner what a client on the other node refused', async () => {
    const { queue, other, laptop } = await twoNodes();
    queue.publish(3);
    await settle();
    expect(other.nack(laptop, 2, false)).toBe('dead-lettered');
    other.ack(laptop, 3);
    await settle();
    expect(queue.rejected).toEqual([{ id: expect.any(String) as string, requeue: false }]);
    expect(queue.unacked.size).toBe(0);
  });

  it('finds what a lost notification carried at the next heartbeat, from history', async () => {
    const store = newMemory();
    const hub = new MemoryBusHub();
    const queue = new FakeQueue();
    const owner = nodeStream(store, hub, 'a', (user, prefetch, callbacks) => queue.factory(user, prefetch, callbacks));
    const otherBus = new MemoryNodeBus({ hub, nodeId: 'b' });
    const other = new UserStream({
      user: 'u1',
      store,
      consumers: waitingConsumer,
      prefetch: 10,
      nackLimit: 3,
      maxMessageBytes: 1024,
      logger: silentLogger(),
      bus: otherBus,
      clusterHeartbeatMs: BEAT_MS,
    });
    const laptop = new FakeSub(10);
    await done(owner.attach(new FakeSub(10), undefined));
    await done(other.attach(laptop, undefined));
    await settle();
    // Lost on the way to b; its bus state never changed, so only a heartbeat can tell.
    const original = hub.publish.bind(hub);
    hub.publish = (channel, payload) => (payload.includes('"numbered"') ? undefined : original(channel, payload));
    queue.publish(2);
    await settle();
    expect(laptop.seqs).toEqual([]);
    await elapse(BEAT_MS + 10);
    expect(laptop.seqs).toEqual([1, 2]);
  });

  it('keeps its connections when it gives its consumer up (a drain): the waiting node takes over and they go on', async () => {
    const store = newMemory();
    const hub = new MemoryBusHub();
    const queue = new FakeQueue();
    const consumers = singleActive(queue);
    const owner = nodeStream(store, hub, 'a', consumers);
    const other = nodeStream(store, hub, 'b', consumers);
    const phone = new FakeSub(10);
    const laptop = new FakeSub(10);
    await done(owner.attach(phone, undefined));
    await done(other.attach(laptop, undefined));
    await settle();
    queue.publish(3);
    await settle();
    other.ack(laptop, 1);
    await settle();
    await done(owner.releaseConsumer());
    await settle();
    // b's consumer is the active one now: it got 2 and 3 back and numbered them again, same seqs.
    expect(other.inflightCount).toBe(2);
    expect(owner.connectionCount).toBe(1);
    queue.publish(1);
    await settle();
    expect(phone.seqs).toEqual([1, 2, 3, 4]);
    expect(laptop.seqs).toEqual([1, 2, 3, 4]);
    // The phone, on the node that let go, acks everything: b acks RabbitMQ.
    owner.ack(phone, 4);
    await settle();
    expect(queue.unacked.size).toBe(0);
    expect(queue.ready).toEqual([]);
  });
});

/**
 * RabbitMQ's single active consumer over a FakeQueue: the first consumer is active; the others
 * wait and get nothing until the active one closes, then the next becomes active.
 */
function singleActive(queue: FakeQueue): ConsumerFactory {
  const waiting: (() => Promise<void>)[] = [];
  let activeTaken = false;
  return async (user, prefetch, callbacks) => {
    let real: ConsumerHandle | undefined;
    const activate = async (): Promise<void> => {
      activeTaken = true;
      real = await queue.factory(user, prefetch, callbacks);
    };
    if (activeTaken) waiting.push(activate);
    else await activate();
    return {
      ack: (tag, multiple) => real?.ack(tag, multiple),
      reject: (tag, requeue) => real?.reject(tag, requeue),
      sync: async () => real?.sync(),
      close: async () => {
        if (!real) return;
        await real.close();
        activeTaken = false;
        await waiting.shift()?.();
      },
    };
  };
}
