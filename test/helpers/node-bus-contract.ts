/** The NodeBus guarantees (src/cluster/node-bus.ts), run against every implementation. */
import { describe, expect, it } from 'vitest';
import type { BusMessage, OutgoingBusMessage } from '../../src/cluster/bus-message.js';
import type { BusHandler, NodeBus } from '../../src/cluster/node-bus.js';
import { ErrorCode } from '../../src/errors.js';

/** Nodes sharing one medium (a hub, a Redis key prefix), and a look at the medium from outside. */
export interface BusTestbed<Bus extends NodeBus = NodeBus> {
  /** A connected node on the medium. */
  node(nodeId: string): Promise<Bus>;
  /** Sends a raw payload on the user's channel, as anything that can reach the medium could. */
  publishRaw(user: string, payload: string): Promise<void>;
  /** How many nodes hold a subscription to the user's channel (PUBSUB NUMSUB). */
  subscribers(user: string): Promise<number>;
  /** A fresh user id (unique per test). */
  user(): string;
  /** Closes the nodes and everything else the testbed opened. */
  close(): Promise<void>;
}

/** A handler that records what it gets, and waits for a count of messages (never on a clock). */
export function collector(): { handler: BusHandler; messages: BusMessage[]; until(count: number): Promise<void> } {
  const messages: BusMessage[] = [];
  const waiters: { count: number; resolve: () => void }[] = [];
  const handler: BusHandler = (message) => {
    messages.push(message);
    for (const waiter of [...waiters]) {
      if (messages.length >= waiter.count) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    }
  };
  const until = (count: number) =>
    messages.length >= count ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ count, resolve }));
  return { handler, messages, until };
}

export const head = (seq: number, epoch = 'e1'): OutgoingBusMessage => ({ kind: 'head', epoch, seq });

/** One message of each kind, in the order a run could send them. */
export const samples: OutgoingBusMessage[] = [
  {
    kind: 'numbered',
    epoch: 'e1',
    entries: [
      { seq: 1, fragment: '"id":"m1","ts":1,"contentType":"application/json","data":{"n":1}', redelivered: false },
      { seq: 2, fragment: '"id":"m2","ts":2,"contentType":"text/plain","data":"two"', redelivered: true },
    ],
  },
  { kind: 'acked', epoch: 'e1', seq: 1 },
  { kind: 'dead-letter', epoch: 'e1', seq: 2, reason: 'nack' },
  head(2),
];

export function nodeBusContract(name: string, make: () => Promise<BusTestbed>): void {
  describe(`${name} node bus contract`, () => {
    it("hands A's messages about a user to B in publish order, stamped with A's id, and never back to A", async () => {
      const bed = await make();
      const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
      expect([a.state, b.state]).toEqual(['connected', 'connected']);
      const user = bed.user();
      const atA = collector();
      const atB = collector();
      await a.subscribe(user, atA.handler);
      await b.subscribe(user, atB.handler);
      for (const message of samples) await a.publish(user, message);
      // B publishes after A's publishes were taken: A gets it after its own would have arrived.
      await b.publish(user, head(7));
      await atB.until(samples.length);
      await atA.until(1);
      expect(atB.messages).toEqual(samples.map((message) => ({ ...message, from: 'node-a' })));
      expect(atA.messages).toEqual([{ ...head(7), from: 'node-b' }]);
      expect([a.stats, b.stats]).toEqual([
        { received: 1, malformed: 0, handlerErrors: 0 },
        { received: samples.length, malformed: 0, handlerErrors: 0 },
      ]);
      await bed.close();
    });

    it('hands each message to every handler of the user, over one subscription of the channel', async () => {
      const bed = await make();
      const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
      const user = bed.user();
      const first = collector();
      const second = collector();
      await b.subscribe(user, first.handler);
      await b.subscribe(user, second.handler);
      expect(await bed.subscribers(user)).toBe(1);
      await a.publish(user, head(1));
      await a.publish(user, head(2));
      await first.until(2);
      await second.until(2);
      expect([first.messages.map((m) => m.kind === 'head' && m.seq), second.messages.map((m) => m.kind === 'head' && m.seq)]).toEqual([
        [1, 2],
        [1, 2],
      ]);
      expect(b.stats.received).toBe(2);
      await bed.close();
    });

    it('hands a node nothing about users it did not subscribe to', async () => {
      const bed = await make();
      const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
      const [watched, other] = [bed.user(), bed.user()];
      const atB = collector();
      await b.subscribe(watched, atB.handler);
      await a.publish(other, head(5));
      // The implementations keep one publisher's order across channels to one subscriber, so this
      // message, published after, arrives after the one above would have.
      await a.publish(watched, head(6));
      await atB.until(1);
      expect(atB.messages).toEqual([{ ...head(6), from: 'node-a' }]);
      expect(b.stats.received).toBe(1);
      expect(await bed.subscribers(other)).toBe(0);
      await bed.close();
    });

    it('stops a handler when its subscription closes, and releases the channel with the last one', async () => {
      const bed = await make();
      const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
      const [user, later] = [bed.user(), bed.user()];
      const first = collector();
      const second = collector();
      const one = await b.subscribe(user, first.handler);
      const two = await b.subscribe(user, second.handler);
      await one.close();
      expect(await bed.subscribers(user)).toBe(1);
      await a.publish(user, head(1));
      await second.until(1);
      await Promise.all([two.close(), two.close()]);
      await one.close();
      expect(await bed.subscribers(user)).toBe(0);
      await a.publish(user, head(2));
      // A later message on another channel B listens to: by then head(2) would have arrived.
      const marker = collector();
      await b.subscribe(later, marker.handler);
      await a.publish(later, head(3));
      await marker.until(1);
      expect([first.messages.length, second.messages.length, b.stats.received]).toEqual([0, 1, 2]);
      // Subscribing again after the release works as the first time.
      const again = collector();
      await b.subscribe(user, again.handler);
      expect(await bed.subscribers(user)).toBe(1);
      await a.publish(user, head(4));
      await again.until(1);
      expect(again.messages).toEqual([{ ...head(4), from: 'node-a' }]);
      await bed.close();
    });

    it('drops and counts malformed messages, and goes on delivering', async () => {
      const bed = await make();
      const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
      const user = bed.user();
      const atB = collector();
      await b.subscribe(user, atB.handler);
      const malformed = [
        'not json',
        '{"kind":"numbered"}',
        JSON.stringify({ kind: 'acked', from: 'node-x', epoch: 'e1', seq: 0 }),
        JSON.stringify({ kind: 'numbered', from: 'node-x', epoch: 'e1', entries: [] }),
        JSON.stringify({ kind: 'gossip', from: 'node-x', epoch: 'e1', seq: 1 }),
        JSON.stringify({ kind: 'head', from: 'bad id', epoch: 'e1', seq: 1 }),
        JSON.stringify([1, 2]),
      ];
      for (const payload of malformed) await bed.publishRaw(user, payload);
      await bed.publishRaw(user, JSON.stringify({ kind: 'head', from: 'node-x', epoch: 'e1', seq: 9, extra: true }));
      await a.publish(user, head(10));
      await atB.until(2);
      expect(atB.messages).toEqual([
        { kind: 'head', from: 'node-x', epoch: 'e1', seq: 9 },
        { ...head(10), from: 'node-a' },
      ]);
      expect(b.stats).toEqual({ received: 2, malformed: malformed.length, handlerErrors: 0 });
      await bed.close();
    });

    it('counts a handler that throws, and still hands the message to the others', async () => {
      const bed = await make();
      const [a, b] = [await bed.node('node-a'), await bed.node('node-b')];
      const user = bed.user();
      const atB = collector();
      await b.subscribe(user, () => {
        throw new Error('handler bug');
      });
      await b.subscribe(user, atB.handler);
      await a.publish(user, head(1));
      await a.publish(user, head(2));
      await atB.until(2);
      expect(b.stats).toEqual({ received: 2, malformed: 0, handlerErrors: 2 });
      await bed.close();
    });

    it('closes idempotently, releases its channels, and refuses to be used afterwards', async () => {
      const bed = await make();
      const b = await bed.node('node-b');
      const user = bed.user();
      const subscription = await b.subscribe(user, collector().handler);
      expect(await bed.subscribers(user)).toBe(1);
      await Promise.all([b.close(), b.close()]);
      await b.close();
      expect(await bed.subscribers(user)).toBe(0);
      expect(b.state).toBe('disconnected');
      await subscription.close();
      await expect(b.subscribe(user, collector().handler)).rejects.toMatchObject({ code: ErrorCode.closed });
      await expect(b.publish(user, head(1))).rejects.toMatchObject({ code: ErrorCode.closed });
      await bed.close();
    });
  });
}
