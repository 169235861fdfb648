/**
 * The smallest cases of the defects the delivery properties (user-stream-model.test.ts) found,
 * kept as regression tests, each fixed:
 *
 * A. A dead-letter request the store could not take (store down when the client nacked) was lost
 *    when its stream closed: the client, which treats the message as done once it asked (and acks
 *    past it, as the SDK does), resumed past it, and the next stream acked the message. Now the
 *    consumer that holds the message rejects it at once, and a request still open when the stream
 *    closes is handed to the user's next stream on the node (DeadLetterHandover).
 * B. A requeue nack past the nack limit of a seq another connection already acked was answered
 *    with nothing: the client, which dropped what followed and waits for the seq again, stalled
 *    until the ack timeout. Now it is told (RELAY_ERR_NACK_LIMIT) and sent what followed.
 * C. A node that is not the owner sent its acked mark in heartbeats uncapped: past a dead-letter
 *    request the store had not taken, which the owner then acked.
 * D. On a node that is not the owner, an attach that read a higher head from the store did not
 *    wake the node's other connections.
 * E. The owner asked the store for dead-letter requests only on acks forwarded over the bus: a
 *    request whose forward the bus lost was overridden by a local ack or an attach.
 * F. The owner asked the store only while it knew of peers: one that never heard of the node
 *    where the request was made (that node's bus link was down) acked on the store's mark.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryBusHub, MemoryNodeBus } from '../../src/cluster/memory-node-bus.js';
import { silentLogger } from '../../src/log.js';
import { DeadLetterHandover } from '../../src/delivery/dead-letter-handover.js';
import { StreamRegistry } from '../../src/delivery/stream-registry.js';
import {
  done,
  elapse,
  FakeQueue,
  FakeSub,
  newMemory,
  nodeStream,
  settle,
  setup,
  storeWith,
  waitingConsumer,
} from '../helpers/delivery-fakes.js';

beforeEach(() => {
  vi.useFakeTimers();
  vi.spyOn(Math, 'random').mockReturnValue(0.5);
});
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

const down = () => Promise.reject(new Error('store down'));

describe('defects the delivery properties found (smallest cases)', () => {
  it('A: a message a client asked to dead-letter while the store was down is rejected when it comes back to the next stream', async () => {
    const queue = new FakeQueue();
    const memory = newMemory();
    let storeDown = false;
    const store = storeWith(memory, { deadLetter: (...args) => (storeDown ? down() : memory.deadLetter(...args)) });
    const registry = new StreamRegistry({
      store,
      consumers: queue.factory,
      prefetch: 10,
      nackLimit: 3,
      maxMessageBytes: 1024,
      logger: silentLogger(),
    });
    const phone = new FakeSub(10);
    const { stream: first, result } = await done(registry.attach('a', phone, undefined));
    queue.publish(1);
    await settle();
    expect(phone.seqs).toEqual([1]);
    // The channel dies unnoticed and the store is down: the reject goes nowhere, the request is not recorded.
    queue.cut();
    storeDown = true;
    expect(first.nack(phone, 1, false)).toBe('dead-lettered');
    expect(first.ack(phone, 1)).toBe('ok');
    // The phone leaves (lingerMs 0): the stream closes with the request open.
    first.detach(phone);
    await done(first.close());
    expect(queue.ready).toHaveLength(1);
    // It comes back past the seq; the store still cannot take the request.
    const again = new FakeSub(10);
    await done(registry.attach('a', again, { epoch: result.epoch, lastSeq: 1 }));
    await elapse(3_000);
    expect({ acks: queue.acks, rejected: queue.rejected, sent: again.seqs }).toEqual({
      acks: [],
      rejected: [{ id: 'm1000', requeue: false }],
      sent: [],
    });
  });

  it('A: a request handed over is written to the store in the background, so that another node rejects the message too', async () => {
    const memory = newMemory();
    let storeDown = true;
    const store = storeWith(memory, { deadLetter: (...args) => (storeDown ? down() : memory.deadLetter(...args)) });
    const { epoch } = await memory.meta('a');
    await memory.assign('a', epoch, 0, [{ id: 'm1', fragment: '{}' }]);
    const handover = new DeadLetterHandover({ store, logger: silentLogger() });
    handover.put('a', epoch, [{ seq: 1, reason: 'client-nack' }]);
    await elapse(2_500);
    expect(await memory.deadLetterRequests('a', epoch, [1])).toEqual([]);
    storeDown = false;
    await elapse(1_000);
    expect(await memory.deadLetterRequests('a', epoch, [1])).toEqual([1]);
    // Recorded: nothing is left for the next stream here, which learns of it from the store.
    expect(handover.size).toBe(0);
    expect(handover.take('a', epoch)).toEqual([]);
  });

  it('A: requests of an epoch the store no longer knows are not handed to a stream of the new one', () => {
    const handover = new DeadLetterHandover({ store: storeWith(newMemory(), { deadLetter: down }), logger: silentLogger() });
    handover.put('a', 'old', [{ seq: 3, reason: 'nack-limit' }]);
    expect(handover.take('a', 'new')).toEqual([]);
    handover.put('a', 'old', [{ seq: 3, reason: 'nack-limit' }]);
    expect(handover.take('a', 'old')).toEqual([{ seq: 3, reason: 'nack-limit' }]);
    handover.stop();
  });

  it('B: a requeue nack past the limit of a seq another connection acked is answered, and the connection goes on after it', async () => {
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
    // Past the nack limit; another connection acked 1: nothing to dead-letter, and the client is told.
    expect(stream.nack(laptop, 1, true)).toBe('processed');
    // The client goes on after 1: it may ack it, and what follows is sent (window 1).
    expect(stream.ack(laptop, 1)).toBe('ok');
    await settle();
    expect(laptop.frames.slice(sent).map(({ seq, redelivered }) => ({ seq, redelivered }))).toEqual([{ seq: 2, redelivered: false }]);
    expect(queue.rejected).toEqual([]);
  });

  it('C: a heartbeat never carries an acked mark past a dead-letter request the store has not taken', async () => {
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

  it('D: a connection on a node that is not the owner gets what a later attach on its node found', async () => {
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
    // The attach woke b's other connections: heartbeats saying head 2, which b knows, would not.
    expect(laptop.seqs).toEqual([1, 2]);
  });

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

  it('E: the client that asked resumes past the seq on the owner: the message is rejected', async () => {
    const { queue, owner, other, laptop, epoch } = await requestOnB();
    other.detach(laptop);
    await done(owner.attach(new FakeSub(10), { epoch, lastSeq: 1 }));
    await elapse(3_000);
    expect({ acks: queue.acks, rejected: queue.rejected.map((r) => r.requeue) }).toEqual({ acks: [], rejected: [false] });
  });

  it('E: a connection attaches on the owner after b wrote its acked mark: the message is rejected', async () => {
    const { queue, owner, other, laptop, lost } = await requestOnB();
    // The laptop acks past the seq, as the SDK does; the bus loses that too.
    lost.add('acked');
    expect(other.ack(laptop, 1)).toBe('ok');
    await settle();
    await done(owner.attach(new FakeSub(10), undefined));
    await settle();
    expect({ acks: queue.acks, rejected: queue.rejected.map((r) => r.requeue) }).toEqual({ acks: [], rejected: [false] });
  });

  it("F: an owner that never heard of the node where a request was made asks the store before acking on the store's mark", async () => {
    const store = newMemory();
    const hub = new MemoryBusHub();
    const queue = new FakeQueue();
    const owner = nodeStream(store, hub, 'a', queue.factory);
    const cutOff = new MemoryNodeBus({ hub, nodeId: 'b' });
    cutOff.setConnected(false);
    const other = nodeStream(store, hub, 'b', waitingConsumer, cutOff);
    const phone = new FakeSub(10);
    await done(owner.attach(phone, undefined));
    queue.publish(1);
    await settle();
    // b's link is down from the start: a never learns that b has connections of the user.
    const laptop = new FakeSub(10);
    await done(other.attach(laptop, undefined));
    await settle();
    expect(laptop.seqs).toEqual([1]);
    expect(other.nack(laptop, 1, false)).toBe('dead-lettered');
    expect(other.ack(laptop, 1)).toBe('ok');
    await elapse(1_000);
    expect((await store.peek('u1'))?.acked).toBe(1);
    // A connection attaches on a: it reads acked mark 1 from the store.
    await done(owner.attach(new FakeSub(10), undefined));
    await elapse(1_000);
    expect({ acks: queue.acks, rejected: queue.rejected.map((r) => r.requeue) }).toEqual({ acks: [], rejected: [false] });
  });
});
