/**
 * WIP, FAILS: bugs the delivery properties (user-stream-model.test.ts) found, each as the smallest
 * case that shows it, plus the properties with the checks that the suite leaves out for them.
 * Every test here fails until its bug is fixed; the file is not named *.test.ts, so vitest's
 * projects do not run it. Run it by hand:
 *
 *   printf "export default { test: { include: ['test/unit/*.wip.ts'] } };\n" > /tmp/wip.config.mjs
 *   npx vitest run --config /tmp/wip.config.mjs --root .
 *
 * A. A dead-letter request the store has not taken yet (store down when the client nacks) is lost
 *    when its stream closes: the client, which treated the message as done and acked it (as
 *    PROTOCOL 3.4 allows and the SDK does), resumes past it, and the next stream acks the message
 *    to RabbitMQ. It is neither processed nor in inbox.dead. PROTOCOL 1.2 item 8 says such a
 *    message "comes back and is delivered again"; to a resuming client it does not.
 * B. A requeue nack past the nack limit of a seq another connection already acked is answered
 *    with nothing and does not rewind ('stale'). The client cannot tell it from a rewind: it drops
 *    what followed and waits for the seq, which never comes; with its window full nothing else
 *    comes either, until the ack timeout (5 min) closes the connection.
 * C. On a node that is not the owner, the heartbeat sends the stream's acked mark as it is, not
 *    capped below a dead-letter request the store has not taken yet (forwarded acks are capped).
 *    One failed write of the request (retried a second later) and the owner, told by the next
 *    heartbeat, checks the store, finds no request and acks the message to RabbitMQ.
 * D. On a node that is not the owner, an attach that reads a higher head from the store raises
 *    the stream's head without pumping the other connections; the peer's heartbeats then bring no
 *    head above it, so those connections wait for the next message ever numbered (forever, if
 *    none comes). A lost or unpublished `numbered` run (a new owner that has not met its peers
 *    yet) followed by such an attach is enough.
 * E. The owner asks the store for dead-letter requests only when another node's ack reaches it
 *    over the bus, not when it takes a higher acked mark from the store (an attach on the owner)
 *    nor on an ack or resume position of its own connections. A request made on another node,
 *    recorded in the store, whose forward the bus lost (pub/sub keeps nothing), is overridden:
 *    the client that asked moves to the owner and resumes past the seq, or any connection
 *    attaches on the owner after the asking node wrote its acked mark; the message is acked.
 */
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryBusHub, MemoryNodeBus } from '../../src/cluster/memory-node-bus.js';
import type { ConsumerFactory } from '../../src/delivery/consumer.js';
import { UserStream } from '../../src/delivery/user-stream.js';
import { silentLogger } from '../../src/log.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import { runScenario, scenario } from '../helpers/delivery-model.js';
import { done, elapse, FakeQueue, FakeSub, newMemory, newStream, settle, setup, storeWith } from '../helpers/delivery-fakes.js';
import { runs } from '../helpers/property-runs.js';

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

const down = () => Promise.reject(new Error('store down'));

/** A consumer that RabbitMQ keeps waiting behind the active one (single active consumer). */
const waitingConsumer: ConsumerFactory = async () => ({
  ack: () => undefined,
  reject: () => undefined,
  sync: async () => undefined,
  close: async () => undefined,
});

function nodeStream(store: MemoryStore, hub: MemoryBusHub, nodeId: string, consumers: ConsumerFactory): UserStream {
  return new UserStream({
    user: 'u1',
    store,
    consumers,
    prefetch: 10,
    nackLimit: 3,
    maxMessageBytes: 1024,
    logger: silentLogger(),
    restartDelayMs: () => 1,
    bus: new MemoryNodeBus({ hub, nodeId }),
    clusterHeartbeatMs: 500,
  });
}

describe('WIP, fails: bugs found by the delivery properties', () => {
  it('A: a dead-letter request the store has not taken is lost when the stream closes, and the message is acked', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    let storeDown = false;
    const store = storeWith(memory, {
      deadLetter: (...args) => (storeDown ? down() : memory.deadLetter(...args)),
      ack: (...args) => (storeDown ? down() : memory.ack(...args)),
    });
    const first = newStream(queue.factory, store, { user: 'a' });
    const phone = new FakeSub(10);
    const { epoch } = await done(first.attach(phone, undefined));
    queue.publish(1);
    await settle();
    expect(phone.seqs).toEqual([1]);
    storeDown = true;
    expect(first.nack(phone, 1, false)).toBe('dead-lettered');
    expect(first.ack(phone, 1)).toBe('ok');
    // The phone leaves (lingerMs 0): the stream closes; its message goes back to the queue.
    first.detach(phone);
    await done(first.close());
    expect(queue.ready).toHaveLength(1);
    storeDown = false;
    const second = newStream(queue.factory, store, { user: 'a' });
    const again = new FakeSub(10);
    await done(second.attach(again, { epoch, lastSeq: 1 }));
    await elapse(3_000);
    // Dead-lettered, or delivered again (PROTOCOL 1.2 item 8); not acked as processed.
    expect({ acks: queue.acks, rejected: queue.rejected.length + again.seqs.length > 0 }).toEqual({ acks: [], rejected: true });
  });

  it('B: a requeue nack the relay ignores (past the limit, acked elsewhere) leaves the client waiting', async () => {
    const { queue, stream } = setup({ nackLimit: 1 });
    const phone = new FakeSub(1);
    const laptop = new FakeSub(1);
    await done(stream.attach(phone, undefined));
    await done(stream.attach(laptop, undefined));
    queue.publish(2);
    await settle();
    expect(stream.nack(laptop, 1, true)).toBe('ok');
    await settle();
    expect(stream.ack(phone, 1)).toBe('ok');
    await settle();
    const sent = laptop.seqs.length;
    // Past the nack limit; another connection acked 1: nothing happens, nothing is said.
    expect(stream.nack(laptop, 1, true)).toBe('stale');
    await elapse(60_000);
    // The laptop, which dropped what followed 1 and waits for 1 again, gets neither.
    expect(laptop.seqs.length).toBeGreaterThan(sent);
  });

  it('C: a heartbeat carries an acked mark past a dead-letter request the store has not taken; the owner acks the message', async () => {
    const memory = newMemory();
    let refuseWrite = false;
    const store = storeWith(memory, { deadLetter: (...args) => (refuseWrite ? down() : memory.deadLetter(...args)) });
    const hub = new MemoryBusHub();
    const queue = new FakeQueue();
    const owner = nodeStream(store, hub, 'a', queue.factory);
    const other = nodeStream(store, hub, 'b', waitingConsumer);
    const phone = new FakeSub(10);
    const laptop = new FakeSub(10);
    await done(owner.attach(phone, undefined));
    await done(other.attach(laptop, undefined));
    await settle();
    queue.publish(1);
    await settle();
    expect(laptop.seqs).toEqual([1]);
    // One write of the request fails (a timeout, say); it is tried again a second later.
    refuseWrite = true;
    expect(other.nack(laptop, 1, false)).toBe('dead-lettered');
    expect(other.ack(laptop, 1)).toBe('ok');
    await elapse(600);
    refuseWrite = false;
    await elapse(2_000);
    expect({ acks: queue.acks, rejected: queue.rejected.map((r) => r.requeue) }).toEqual({ acks: [], rejected: [false] });
  });

  it('D: a connection on a node that is not the owner misses messages a later attach on its node found', async () => {
    const store = newMemory();
    const hub = new MemoryBusHub();
    const queue = new FakeQueue();
    const owner = nodeStream(store, hub, 'a', queue.factory);
    const other = nodeStream(store, hub, 'b', waitingConsumer);
    const phone = new FakeSub(10);
    const laptop = new FakeSub(10);
    await done(owner.attach(phone, undefined));
    await done(other.attach(laptop, undefined));
    await settle();
    // The run of numbered messages does not reach b (pub/sub keeps nothing).
    const publish = hub.publish.bind(hub);
    hub.publish = (channel, payload) => (payload.includes('"numbered"') ? undefined : publish(channel, payload));
    queue.publish(2);
    await settle();
    // Before a heartbeat, another connection attaches on b: it reads head 2 from the store.
    const tablet = new FakeSub(10);
    await done(other.attach(tablet, undefined));
    await elapse(5_000);
    expect(tablet.seqs).toEqual([1, 2]);
    // Heartbeats say head 2, which b knows already: the laptop is never sent 1 and 2.
    expect(laptop.seqs).toEqual([1, 2]);
  });
});

describe('WIP, fails: bugs found by the delivery properties, on two nodes', () => {
  /** Two nodes; the owner is a; b's dead-letter requests reach the store, and the bus loses their forward to a. */
  async function requestOnB() {
    const store = newMemory();
    const hub = new MemoryBusHub();
    const queue = new FakeQueue();
    const owner = nodeStream(store, hub, 'a', queue.factory);
    const other = nodeStream(store, hub, 'b', waitingConsumer);
    const phone = new FakeSub(10);
    const laptop = new FakeSub(10);
    await done(owner.attach(phone, undefined));
    const { epoch } = await done(other.attach(laptop, undefined));
    await settle();
    queue.publish(1);
    await settle();
    expect([phone.seqs, laptop.seqs]).toEqual([[1], [1]]);
    const lost = new Set(['dead-letter']);
    const publish = hub.publish.bind(hub);
    hub.publish = (channel, payload) => ([...lost].some((kind) => payload.includes(`"${kind}"`)) ? undefined : publish(channel, payload));
    expect(other.nack(laptop, 1, false)).toBe('dead-lettered');
    await settle();
    expect(await store.deadLetterRequests('u1', epoch, [1])).toEqual([1]);
    return { queue, owner, other, laptop, epoch, lost };
  }

  it('E: the client that asked resumes past the seq on the owner: the message is acked', async () => {
    const { queue, owner, other, laptop, epoch } = await requestOnB();
    other.detach(laptop);
    await done(owner.attach(new FakeSub(10), { epoch, lastSeq: 1 }));
    await elapse(3_000);
    expect({ acks: queue.acks, rejected: queue.rejected.map((r) => r.requeue) }).toEqual({ acks: [], rejected: [false] });
  });

  it('E: a connection attaches on the owner after b wrote its acked mark: the message is acked', async () => {
    const { queue, owner, other, laptop, lost } = await requestOnB();
    // The laptop acks past the seq, as the SDK does; the bus loses that too.
    lost.add('acked');
    expect(other.ack(laptop, 1)).toBe('ok');
    await settle();
    await done(owner.attach(new FakeSub(10), undefined));
    await settle();
    expect({ acks: queue.acks, rejected: queue.rejected.map((r) => r.requeue) }).toEqual({ acks: [], rejected: [false] });
  });
});

describe('WIP, fails: the delivery properties with the checks the suite leaves out', () => {
  const property = (fixed: Parameters<typeof scenario>[0]) =>
    fc.asyncProperty(scenario(fixed, 60), async (run) => {
      vi.clearAllTimers();
      await runScenario(run);
    });

  it('one node, dead-letter requests binding until the store took them, the client not told of an ignored nack (A, B)', async () => {
    await fc.assert(property({ nodes: 1, strictDeadLetters: true, clientWaitsOnSilentNack: true }), runs(1_000));
  });

  it('two nodes, the same, and no nudge for a stalled device (A to E)', async () => {
    await fc.assert(property({ nodes: 2, strictDeadLetters: true, clientWaitsOnSilentNack: true, nudgeStalledPeers: false }), runs(1_000));
  });
});
