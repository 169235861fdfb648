/** Fakes for the delivery core's unit tests: a RabbitMQ queue, a connection, fake-time helpers. */
import { pino } from 'pino';
import { vi } from 'vitest';
import type { MemoryBusHub } from '../../src/cluster/memory-node-bus.js';
import { MemoryNodeBus } from '../../src/cluster/memory-node-bus.js';
import type { NodeBus } from '../../src/cluster/node-bus.js';
import type { ConsumerCallbacks, ConsumerFactory, Delivery } from '../../src/delivery/consumer.js';
import { RECEIPT_HEADER, type ReceiptRequest, type ReceiptSink } from '../../src/delivery/delivery-receipt.js';
import { UserStream, type Subscriber } from '../../src/delivery/user-stream.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { MemoryStore } from '../../src/store/memory-store.js';
import type { SeqStore } from '../../src/store/store.js';

/** A broker queue in memory with one consumer at a time, RabbitMQ's tag and requeue rules. */
export class FakeQueue {
  ready: { id: string; n: number; redelivered: boolean }[] = [];
  unacked = new Map<number, { id: string; n: number }>();
  acks: { tag: number; multiple: boolean }[] = [];
  rejected: { id: string; requeue: boolean }[] = [];
  callbacks: ConsumerCallbacks | undefined;
  private unnoticed: ConsumerCallbacks | undefined;
  prefetch = 0;
  nextTag = 1;
  /** Messages (by id) published with the receipt header. */
  readonly receiptIds = new Set<string>();
  starts = 0;

  factory: ConsumerFactory = async (_user, prefetch, callbacks) => {
    this.starts += 1;
    this.callbacks = callbacks;
    this.prefetch = prefetch;
    this.nextTag = 1;
    queueMicrotask(() => this.dispatch());
    const mine = callbacks;
    return {
      ack: (tag, multiple) => {
        if (this.callbacks !== mine) return;
        this.acks.push({ tag, multiple });
        const tags = multiple ? [...this.unacked.keys()].filter((t) => t <= tag) : [tag];
        for (const t of tags) {
          if (!this.unacked.delete(t)) throw new Error(`unknown delivery tag ${t}: channel error`);
        }
        this.dispatch();
      },
      reject: (tag, requeue) => {
        // A frame sent on a dead channel goes nowhere.
        if (this.callbacks !== mine) return;
        const message = this.unacked.get(tag);
        if (!message) throw new Error(`unknown delivery tag ${tag}`);
        this.unacked.delete(tag);
        this.rejected.push({ id: message.id, requeue });
        this.dispatch();
      },
      sync: async () => {
        if (this.callbacks !== mine) throw new Error('channel closed');
      },
      close: async () => {
        if (this.callbacks === mine) this.returnUnacked();
      },
    };
  };

  publish(count: number): void {
    const base = this.ready.length + this.unacked.size + this.acks.length + 1000;
    for (let i = 0; i < count; i += 1) this.ready.push({ id: `m${base + i}`, n: base + i, redelivered: false });
    this.dispatch();
  }

  publishIds(ids: string[]): void {
    for (const id of ids) this.ready.push({ id, n: 0, redelivered: false });
    this.dispatch();
  }

  /** Closing the channel: unacked messages go back to the head, in order, flagged redelivered. */
  returnUnacked(): void {
    const returned = [...this.unacked.entries()].sort((a, b) => a[0] - b[0]).map(([, m]) => ({ ...m, redelivered: true }));
    this.unacked.clear();
    this.ready.unshift(...returned);
    this.callbacks = undefined;
  }

  /** The channel dies without the relay noticing yet (see `noticeLoss`): its unacked messages go back. */
  cut(): void {
    this.unnoticed = this.callbacks;
    this.returnUnacked();
  }

  /** The relay learns that the channel `cut` ended. */
  noticeLoss(): void {
    const callbacks = this.unnoticed;
    this.unnoticed = undefined;
    callbacks?.onLost('channel closed');
  }

  /** The broker loses the consumer (connection dropped). */
  lose(): void {
    const callbacks = this.callbacks;
    this.returnUnacked();
    callbacks?.onLost('connection lost');
  }

  dispatch(): void {
    const callbacks = this.callbacks;
    while (callbacks && this.ready.length > 0 && this.unacked.size < this.prefetch) {
      const message = this.ready.shift()!;
      const tag = this.nextTag++;
      this.unacked.set(tag, message);
      const delivery: Delivery = {
        tag,
        content: Buffer.from(JSON.stringify({ n: message.n })),
        messageId: message.id,
        contentType: 'application/json',
        timestamp: 1_700_000_000_000,
        headers: this.receiptIds.has(message.id) ? { [RECEIPT_HEADER]: true } : undefined,
        redelivered: message.redelivered,
      };
      callbacks.onDelivery(delivery);
    }
  }
}

export class FakeSub implements Subscriber {
  readonly session = Math.random().toString(36);
  readonly frames: { seq: number; redelivered: boolean; n: number }[] = [];
  statuses: string[] = [];
  resets: { epoch: string; lastSeq: number }[] = [];
  resyncs = 0;
  open = true;
  constructor(readonly window: number) {}
  send(frame: string): void {
    const parsed = JSON.parse(frame) as { seq: number; redelivered: boolean; data: { n: number } };
    this.frames.push({ seq: parsed.seq, redelivered: parsed.redelivered, n: parsed.data.n });
  }
  writable(): boolean {
    return this.open;
  }
  status(state: 'ok' | 'degraded'): void {
    this.statuses.push(state);
  }
  reset(epoch: string, lastSeq: number): void {
    this.resets.push({ epoch, lastSeq });
  }
  resync(): void {
    this.resyncs += 1;
  }
  get seqs(): number[] {
    return this.frames.map((f) => f.seq);
  }
}

/** Lets fake time run for `ms` (timers, and the promises they settle). */
export const elapse = (ms: number) => vi.advanceTimersByTimeAsync(ms);
export const settle = () => elapse(5);

/** Awaits `work` while fake time runs (it may wait on timers: a slow store, a bounded close). */
export async function done<T>(work: Promise<T>): Promise<T> {
  let finished = false;
  const mark = () => {
    finished = true;
  };
  work.then(mark, mark);
  for (let i = 0; i < 2_000 && !finished; i += 1) await elapse(5);
  return work;
}

export const newMemory = () => new MemoryStore({ maxCount: 1000, maxAgeMs: 3_600_000 });

/** The memory store with some methods replaced (slow or failing), the others its own. */
export function storeWith(
  memory: MemoryStore,
  overrides: Partial<Pick<MemoryStore, 'assign' | 'ack' | 'deadLetter' | 'deadLettered'>>,
): MemoryStore {
  return Object.assign(Object.create(memory) as MemoryStore, overrides);
}

/** The memory store with acks that take `delayMs` and record each mark written, in order. */
export function recordingAcks(memory: MemoryStore, delayMs = 0): { store: MemoryStore; written: number[] } {
  const written: number[] = [];
  const store = storeWith(memory, {
    ack: async (user: string, epoch: string, seq: number) => {
      written.push(seq);
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
      return memory.ack(user, epoch, seq);
    },
  });
  return { store, written };
}

export function newStream(
  consumers: ConsumerFactory,
  store: SeqStore,
  options: {
    user?: string;
    prefetch?: number;
    nackLimit?: number;
    lingerMs?: number;
    storeAckIntervalMs?: number;
    receipts?: ReceiptSink;
    maxMessageBytes?: number;
  } = {},
): UserStream {
  return new UserStream({
    user: options.user ?? 'u1',
    store,
    consumers,
    prefetch: options.prefetch ?? 10,
    nackLimit: options.nackLimit ?? 3,
    maxMessageBytes: options.maxMessageBytes ?? 1024,
    logger: silentLogger(),
    restartDelayMs: () => 1,
    ...(options.receipts === undefined ? {} : { receipts: options.receipts }),
    ...(options.lingerMs === undefined ? {} : { lingerMs: options.lingerMs }),
    ...(options.storeAckIntervalMs === undefined ? {} : { storeAckIntervalMs: options.storeAckIntervalMs }),
  });
}

/** The cluster heartbeat of nodeStream's streams (ms). */
export const CLUSTER_BEAT_MS = 500;

/** A consumer that RabbitMQ keeps waiting behind the active one (single active consumer): it is up and gets nothing. */
export const waitingConsumer: ConsumerFactory = async () => ({
  ack: () => undefined,
  reject: () => undefined,
  sync: async () => undefined,
  close: async () => undefined,
});

/** User u1's stream on node `nodeId` of a memory bus (the bus can be given, to cut it off). */
export function nodeStream(
  store: SeqStore,
  hub: MemoryBusHub,
  nodeId: string,
  consumers: ConsumerFactory,
  bus: NodeBus = new MemoryNodeBus({ hub, nodeId }),
): UserStream {
  return new UserStream({
    user: 'u1',
    store,
    consumers,
    prefetch: 10,
    nackLimit: 3,
    maxMessageBytes: 1024,
    logger: silentLogger(),
    restartDelayMs: () => 1,
    bus,
    clusterHeartbeatMs: CLUSTER_BEAT_MS,
  });
}

export function setup(options: { prefetch?: number; nackLimit?: number } = {}) {
  const queue = new FakeQueue();
  const store = newMemory();
  const stream = newStream((user, prefetch, callbacks) => queue.factory(user, prefetch, callbacks), store, options);
  return { queue, store, stream };
}

/** A pino logger at level debug that keeps each line (level number and msg) for assertions. */
export function capturingLogger(): { logger: Logger; lines: { level: number; msg: string }[] } {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as { level: number; msg: string }) });
  return { logger, lines };
}

/** A valid JSON delivery on `tag` with messageId `id` (override any field to make it invalid). */
export function jsonDelivery(tag: number, id: string, overrides: Partial<Delivery> = {}): Delivery {
  return {
    tag,
    content: Buffer.from(JSON.stringify({ n: tag })),
    messageId: id,
    contentType: 'application/json',
    timestamp: 1_700_000_000_000,
    headers: undefined,
    redelivered: false,
    ...overrides,
  };
}

/**
 * A receipt sink whose batches settle when the test says: `confirm()` or `fail()` the oldest
 * batch not settled yet, or set `auto` to confirm every batch at once.
 */
export class FakeReceiptSink implements ReceiptSink {
  readonly batches: ReceiptRequest[][] = [];
  auto = false;
  private readonly open: { resolve: () => void; reject: (error: Error) => void }[] = [];

  publish(receipts: readonly ReceiptRequest[]): Promise<void> {
    this.batches.push([...receipts]);
    if (this.auto) return Promise.resolve();
    return new Promise<void>((resolve, reject) => this.open.push({ resolve, reject }));
  }

  confirm(): void {
    this.open.shift()?.resolve();
  }

  fail(): void {
    this.open.shift()?.reject(new Error('no confirm'));
  }

  get pending(): number {
    return this.open.length;
  }

  /** Every receipt published so far, in order. */
  get all(): ReceiptRequest[] {
    return this.batches.flat();
  }
}
