/**
 * A model of one user's delivery for property tests (test/unit/user-stream-model.test.ts): the
 * relay side is real (StreamRegistry and UserStream on one node, or on two nodes that share the
 * memory store and a memory bus), RabbitMQ is the FakeQueue behind a single active consumer, and
 * the user's devices are modelled clients that keep a position as PROTOCOL 1.1 tells them to.
 *
 * `World` runs commands (publish, connect, process, ack, nack, disconnect, lose the consumer, cut
 * its channel, let time pass, take the store down or up) and checks every guarantee it can see
 * as it goes; `finish` heals the store and lets the devices catch up, `checkEnd` checks what
 * must hold once everything settled. A broken guarantee throws (fast-check then shrinks the run).
 */
import fc from 'fast-check';
import { background } from '../../src/background.js';
import { MemoryBusHub, MemoryNodeBus } from '../../src/cluster/memory-node-bus.js';
import type { ConsumerCallbacks, ConsumerFactory, ConsumerHandle } from '../../src/delivery/consumer.js';
import { StreamRegistry } from '../../src/delivery/stream-registry.js';
import type { AttachResult, Subscriber, UserStream } from '../../src/delivery/user-stream.js';
import { silentLogger } from '../../src/log.js';
import type { MemoryStore } from '../../src/store/memory-store.js';
import { FakeQueue, done, elapse, newMemory, settle } from './delivery-fakes.js';

const USER = 'model';
const DEVICES = 3;
const CLUSTER_HEARTBEAT_MS = 500;

export interface ModelOptions {
  /** Relay nodes sharing the user (1, or 2 with a memory bus between them). */
  nodes: number;
  prefetch: number;
  nackLimit: number;
  lingerMs: number;
  storeAckIntervalMs: number;
}

// Connections and devices --------------------------------------------------------------------

interface Frame {
  seq: number;
  id: string;
  redelivered: boolean;
}

/** One connection as the stream sees it: records what it is sent and told. */
class ModelSub implements Subscriber {
  private static sessions = 0;
  readonly session = `session-${(ModelSub.sessions += 1)}`;
  readonly frames: Frame[] = [];
  resetTo: { epoch: string; lastSeq: number } | undefined;
  resynced = false;
  constructor(readonly window: number) {}
  send(frame: string): void {
    const parsed = JSON.parse(frame) as Frame;
    this.frames.push({ seq: parsed.seq, id: parsed.id, redelivered: parsed.redelivered });
  }
  writable(): boolean {
    return true;
  }
  status(): void {}
  reset(epoch: string, lastSeq: number): void {
    this.resetTo ??= { epoch, lastSeq };
  }
  resync(): void {
    this.resynced = true;
  }
}

interface Position {
  epoch: string;
  lastSeq: number;
}

/** A device's current connection, and what the model expects of it. */
interface Connection {
  sub: ModelSub;
  stream: UserStream;
  node: number;
  epoch: string;
  /** Frames of `sub` already taken into the inbox. */
  read: number;
  /** Received, not yet processed (the SDK's pump). */
  inbox: Frame[];
  /** The seq the relay must send next on this connection. */
  expectedNext: number;
  /** The highest seq received on this connection. */
  highestReceived: number;
  /** The connection's cumulative ack, as the relay counts it. */
  acked: number;
  /** A requeue nack of this seq is being replayed. */
  rewinding: number | undefined;
}

interface Device {
  name: string;
  /** The node it last connected to (it reconnects there). */
  node: number;
  position: Position | undefined;
  connection: Connection | undefined;
  /** Message ids received, per node and epoch (for the redelivered flag, which is per node). */
  seen: Map<string, Set<string>>;
}

// The broker and the store -------------------------------------------------------------------

/**
 * RabbitMQ's single active consumer over the fake queue: the first consumer gets the deliveries,
 * the others wait; when the active one is closed or its channel dies, the next waiting one
 * becomes active (RabbitMQ does not wait for the relay to notice the loss).
 */
class SingleActiveQueue {
  private active: { id: number } | undefined;
  private readonly waiting: { id: number; activate: () => Promise<void> }[] = [];
  private consumers = 0;

  constructor(
    readonly queue: FakeQueue,
    private readonly open: (user: string, prefetch: number, callbacks: ConsumerCallbacks, consumer: number) => Promise<ConsumerHandle>,
  ) {}

  /** A node's consumer factory; `started` hears of each consumer's number as it starts. */
  factoryFor =
    (started: (consumer: number) => void): ConsumerFactory =>
    async (user, prefetch, callbacks) => {
      const me = { id: (this.consumers += 1) };
      started(me.id);
      let real: ConsumerHandle | undefined;
      let opening: Promise<ConsumerHandle> | undefined;
      let closed = false;
      const activate = async (): Promise<void> => {
        this.active = me;
        real = await (opening = this.open(
          user,
          prefetch,
          {
            onDelivery: (delivery) => callbacks.onDelivery(delivery),
            onLost: (reason) => {
              if (this.active === me) this.next();
              callbacks.onLost(reason);
            },
          },
          me.id,
        ));
      };
      if (this.active) this.waiting.push({ id: me.id, activate });
      else await activate();
      return {
        ack: (tag, multiple) => real?.ack(tag, multiple),
        reject: (tag, requeue) => real?.reject(tag, requeue),
        sync: async () => {
          if (closed) throw new Error('channel closed');
          await real?.sync();
        },
        close: async () => {
          closed = true;
          const index = this.waiting.findIndex((waiter) => waiter.id === me.id);
          if (index >= 0) this.waiting.splice(index, 1);
          // Activated just now: it is closed once its channel is open.
          if (opening) await opening;
          if (!real) return;
          await real.close();
          if (this.active === me) this.next();
        },
      };
    };

  /** The active consumer's channel died: the next waiting consumer becomes active. */
  next(): void {
    this.active = undefined;
    const waiter = this.waiting.shift();
    if (waiter) background(waiter.activate(), () => undefined);
  }
}

/**
 * The memory store, every call failing while `down()` says so; `recorded` hears of each
 * dead-letter request the store took.
 */
function switchableStore(memory: MemoryStore, down: () => boolean, recorded: (epoch: string, seq: number) => void): MemoryStore {
  const refuse = () => Promise.reject(new Error('store down'));
  const deadLetter = async (...args: Parameters<MemoryStore['deadLetter']>) => {
    const answer = await memory.deadLetter(...args);
    if (answer === true) recorded(args[1], args[2]);
    return answer;
  };
  return Object.assign(Object.create(memory) as MemoryStore, {
    meta: (...args: Parameters<MemoryStore['meta']>) => (down() ? refuse() : memory.meta(...args)),
    assign: (...args: Parameters<MemoryStore['assign']>) => (down() ? refuse() : memory.assign(...args)),
    ack: (...args: Parameters<MemoryStore['ack']>) => (down() ? refuse() : memory.ack(...args)),
    range: (...args: Parameters<MemoryStore['range']>) => (down() ? refuse() : memory.range(...args)),
    deadLetter: (...args: Parameters<MemoryStore['deadLetter']>) => (down() ? refuse() : deadLetter(...args)),
    deadLettered: (...args: Parameters<MemoryStore['deadLettered']>) => (down() ? refuse() : memory.deadLettered(...args)),
    deadLetterRequests: (...args: Parameters<MemoryStore['deadLetterRequests']>) =>
      down() ? refuse() : memory.deadLetterRequests(...args),
  });
}

/** A client's request to dead-letter a message: who asked, on which node and stream, for which seq. */
interface Request {
  device: string;
  stream: UserStream;
  node: number;
  epoch: string;
  seq: number;
}

/** Thrown at the first broken guarantee: fast-check shrinks the commands that led to it. */
export class Violation extends Error {}

// The world ----------------------------------------------------------------------------------

export class World {
  readonly queue = new FakeQueue();
  private readonly broker: SingleActiveQueue;
  private readonly registries: StreamRegistry[];
  /** Each node's link to the others (none with one node). */
  private readonly buses: MemoryNodeBus[] = [];
  readonly devices: Device[];
  storeDown = false;
  /** Message ids published, in order. */
  readonly published: string[] = [];
  private nextMessage = 1;
  /** epoch -> id -> seq and epoch -> seq -> id, from every frame any connection got. */
  private readonly seqOf = new Map<string, Map<string, number>>();
  private readonly idAt = new Map<string, Map<number, string>>();
  /** epoch, device:epoch and node@epoch -> the highest seq some client (that device, on that node) acked or resumed past. */
  private readonly clientMark = new Map<string, number>();
  /**
   * Message ids a client asked to dead-letter (the relay said 'dead-lettered') before any client
   * acked them: which device asked, on which stream; and every id some client asked to dead-letter.
   */
  private readonly deadLetterRequested = new Map<string, Request>();
  private readonly deadLetterAsked = new Set<string>();
  /** Each consumer's node and the stream that started it. */
  private readonly consumerOf = new Map<number, { node: number; stream: UserStream | undefined }>();
  /** Those of them whose request reached the store. */
  private readonly recordedRequests = new Set<string>();
  readonly brokerAcked: string[] = [];
  readonly brokerRejected: string[] = [];
  /** Broken guarantees seen inside the relay's own callbacks (thrown at the next check). */
  private readonly problems: string[] = [];
  private pendingNotice: { cancel: () => void; notice: () => void } | undefined;
  /** The commands and notable events of the run, for the failure message. */
  readonly log: string[] = [];

  constructor(readonly options: ModelOptions) {
    const store = switchableStore(
      newMemory(),
      () => this.storeDown,
      (epoch, seq) => {
        const id = this.idAt.get(epoch)?.get(seq);
        if (id !== undefined) this.recordedRequests.add(id);
      },
    );
    this.broker = new SingleActiveQueue(this.queue, (user, prefetch, callbacks, consumer) =>
      this.openRecording(user, prefetch, callbacks, consumer),
    );
    const hub = new MemoryBusHub();
    this.registries = Array.from(
      { length: options.nodes },
      (_, node) =>
        new StreamRegistry({
          store,
          consumers: this.broker.factoryFor((consumer) => {
            this.log.push(`consumer ${consumer} starts on node${node}`);
            this.consumerOf.set(consumer, { node, stream: this.registries[node]?.get(USER) });
          }),
          prefetch: options.prefetch,
          nackLimit: options.nackLimit,
          maxMessageBytes: 1024,
          logger: silentLogger(),
          lingerMs: options.lingerMs,
          storeAckIntervalMs: options.storeAckIntervalMs,
          ...(options.nodes > 1 ? { bus: this.bus(hub, node), clusterHeartbeatMs: CLUSTER_HEARTBEAT_MS } : {}),
        }),
    );
    this.devices = Array.from({ length: DEVICES }, (_, index) => ({
      name: `device${index}`,
      node: 0,
      position: undefined,
      connection: undefined,
      seen: new Map(),
    }));
  }

  private bus(hub: MemoryBusHub, node: number): MemoryNodeBus {
    const bus = new MemoryNodeBus({ hub, nodeId: `node${node}` });
    this.buses.push(bus);
    return bus;
  }

  fail(message: string): never {
    throw new Violation(`${message}\n  after: ${this.log.slice(-30).join('; ')}`);
  }

  /** A consumer on the fake queue whose acks and rejects are checked against what clients did. */
  private async openRecording(user: string, prefetch: number, callbacks: ConsumerCallbacks, consumer: number): Promise<ConsumerHandle> {
    const queue = this.queue;
    const handle = await queue.factory(user, prefetch, callbacks);
    const mine = queue.callbacks;
    const settleWith = (what: string, action: () => void) => {
      try {
        action();
      } catch (error) {
        this.problems.push(`${what}: ${String(error)}`);
      }
    };
    return {
      ...handle,
      ack: (tag, multiple) => {
        if (queue.callbacks === mine) {
          const tags = multiple ? [...queue.unacked.keys()].filter((t) => t <= tag) : [tag];
          for (const t of tags) {
            const message = queue.unacked.get(t);
            if (message) this.checkBrokerAck(message.id, consumer);
            if (message) this.log.push(`consumer ${consumer} acks ${message.id}`);
          }
        }
        settleWith(`ack of tag ${tag}`, () => handle.ack(tag, multiple));
      },
      reject: (tag, requeue) => {
        const message = queue.callbacks === mine ? queue.unacked.get(tag) : undefined;
        if (message) {
          if (requeue) this.problems.push(`${message.id} rejected with requeue (the relay never requeues through RabbitMQ)`);
          if (!this.deadLetterAsked.has(message.id)) this.problems.push(`${message.id} dead-lettered, but no client asked`);
          this.brokerRejected.push(message.id);
          this.log.push(`consumer ${consumer} rejects ${message.id}`);
        }
        settleWith(`reject of tag ${tag}`, () => handle.reject(tag, requeue));
      },
    };
  }

  /**
   * A RabbitMQ ack of `id` needs a client that acked its seq (or resumed past it). When a client
   * asked to dead-letter it first, that client's own later acks do not count: then another device
   * must have processed it, else the message was dropped without being processed.
   */
  private checkBrokerAck(id: string, consumer: number): void {
    this.brokerAcked.push(id);
    const ackers = this.devices.filter((device) =>
      [...this.seqOf].some(([epoch, ids]) => (ids.get(id) ?? Infinity) <= (this.clientMark.get(`${device.name}:${epoch}`) ?? 0)),
    );
    if (ackers.length === 0) this.problems.push(`${id} acked to RabbitMQ, but no client acked its seq`);
    const request = this.deadLetterRequested.get(id);
    if (!request) return;
    const acking = this.consumerOf.get(consumer);
    const by = `consumer ${consumer} on node${acking?.node}${acking?.stream === request.stream ? ', the requesting stream' : ''}`;
    const asked = `${request.device} on node${request.node} asked to dead-letter it`;
    const others = ackers.filter((device) => device.name !== request.device).map((device) => device.name);
    if (others.length > 0) {
      // Processed by another device after the request: acking it is right (the user processed it
      // once), but the stream that took the request rejects the message all the same.
      if (acking?.stream === request.stream) {
        this.problems.push(`${id} acked to RabbitMQ by ${by}: ${asked} before ${others.join(', ')} processed it`);
      }
    } else if (this.recordedRequests.has(id)) {
      this.problems.push(`${id} acked to RabbitMQ by ${by}, unprocessed: ${asked}, and the store holds the request`);
    } else if (!this.unrecordedElsewhere(request, consumer)) {
      this.problems.push(`${id} acked to RabbitMQ by ${by}, unprocessed: ${asked} (the store has not taken the request yet)`);
    }
  }

  /**
   * The one known limit (README, Limits; PROTOCOL 1.2 item 8): a request the store has not taken
   * is known only on the node that took it (kept there, past its connection, until the store
   * takes it). A client that resumes past the seq on another node meanwhile is taken at its word
   * there: that node acks the message. On the node that took it, the request always binds.
   */
  private unrecordedElsewhere(request: Request, consumer: number): boolean {
    const acking = this.consumerOf.get(consumer);
    return acking !== undefined && acking.node !== request.node;
  }

  private markClientAck(device: Device, node: number, epoch: string, seq: number): void {
    for (const key of [epoch, `${device.name}:${epoch}`, `node${node}@${epoch}`]) {
      if (seq > (this.clientMark.get(key) ?? 0)) this.clientMark.set(key, seq);
    }
  }

  private checkProblems(): void {
    if (this.problems.length > 0) this.fail(this.problems.join('\n'));
  }

  // Commands -----------------------------------------------------------------------------------

  publish(count: number): void {
    for (let i = 0; i < count; i += 1) {
      const n = this.nextMessage++;
      const id = `m${n}`;
      this.published.push(id);
      this.queue.ready.push({ id, n, redelivered: false });
    }
    this.queue.dispatch();
  }

  async connect(device: Device, node: number, withPosition: boolean, window: number): Promise<void> {
    if (device.connection) return;
    device.node = node % this.options.nodes;
    const sub = new ModelSub(window);
    const resume = withPosition ? device.position : undefined;
    // Only what the client processed is ever resumed from: a resume acknowledges it (PROTOCOL 7),
    // as of the hello (the relay may ack RabbitMQ before the welcome).
    if (resume) this.markClientAck(device, device.node, resume.epoch, resume.lastSeq);
    let attached: { stream: UserStream; result: AttachResult };
    try {
      attached = await done(this.registries[device.node]!.attach(USER, sub, resume && { ...resume }));
    } catch {
      // Refused (the store or the broker is down): the device tries again later.
      return;
    }
    const { stream, result } = attached;
    // PROTOCOL 7: a position in the current epoch that is honoured continues right after it.
    if (resume && result.resumed && result.recovered && result.lastSeq !== resume.lastSeq) {
      this.fail(`${device.name} resumed from ${resume.lastSeq} but was welcomed at ${result.lastSeq}`);
    }
    if (resume && !result.reset && result.lastSeq > resume.lastSeq && result.recovered) {
      this.fail(`${device.name} resumed from ${resume.lastSeq} and was moved to ${result.lastSeq} without recovered:false`);
    }
    device.position = { epoch: result.epoch, lastSeq: result.lastSeq };
    device.connection = {
      sub,
      stream,
      node: device.node,
      epoch: result.epoch,
      read: 0,
      inbox: [],
      expectedNext: result.lastSeq + 1,
      highestReceived: result.lastSeq,
      acked: result.lastSeq,
      rewinding: undefined,
    };
  }

  disconnect(device: Device): void {
    const connection = device.connection;
    if (!connection) return;
    device.connection = undefined;
    // What it received and did not process comes again after it resumes.
    connection.stream.detach(connection.sub);
  }

  /** Processes up to `count` received frames as PROTOCOL 1.1 says; a gap ends the connection. */
  process(device: Device, count: number): void {
    const connection = device.connection;
    const position = device.position;
    if (!connection || !position) return;
    for (let i = 0; i < count && connection.inbox.length > 0; i += 1) {
      const frame = connection.inbox.shift()!;
      if (frame.seq === position.lastSeq + 1) {
        position.lastSeq = frame.seq;
        connection.rewinding = undefined;
      } else if (frame.seq > position.lastSeq + 1) {
        this.log.push(`${device.name} sees a gap at ${frame.seq} (position ${position.lastSeq}), reconnects`);
        this.disconnect(device);
        return;
      }
    }
  }

  /** A cumulative ack of a processed seq: the latest, or one up to `back` below it. */
  ack(device: Device, back: number): void {
    const connection = device.connection;
    const position = device.position;
    if (!connection || !position || position.lastSeq <= connection.acked) return;
    const seq = Math.max(connection.acked + 1, position.lastSeq - back);
    const outcome = connection.stream.ack(connection.sub, seq);
    if (outcome !== 'ok') this.fail(`${device.name}'s ack of processed seq ${seq} was answered '${outcome}'`);
    connection.acked = seq;
    this.markClientAck(device, connection.node, connection.epoch, seq);
  }

  /** The device's handler fails on the next message: it nacks it (and acks it at once if `ackAfter`, as the SDK does). */
  nack(device: Device, requeue: boolean, ackAfter: boolean): void {
    const connection = device.connection;
    const position = device.position;
    if (!connection || !position) return;
    this.process(
      device,
      connection.inbox.findIndex((frame) => frame.seq > position.lastSeq),
    );
    const next = connection.inbox[0];
    if (device.connection !== connection || next?.seq !== position.lastSeq + 1) return;
    const seq = next.seq;
    // The relay rejects a message it holds within the nack: asked before the answer comes.
    const askedBefore = this.deadLetterAsked.has(next.id);
    this.deadLetterAsked.add(next.id);
    const outcome = connection.stream.nack(connection.sub, seq, requeue);
    if (outcome !== 'dead-lettered' && !askedBefore) this.deadLetterAsked.delete(next.id);
    this.log.push(`${device.name} nacks ${seq} (${requeue ? 'requeue' : 'dead-letter'}): ${outcome}`);
    if (outcome === 'unknown') this.fail(`${device.name}'s nack of received seq ${seq} was answered 'unknown'`);
    connection.inbox.shift();
    if (outcome === 'dead-lettered') {
      // A seq some client acked before counts as processed (PROTOCOL 3.4): the request may be moot.
      const processed = (this.clientMark.get(connection.epoch) ?? 0) >= seq;
      if (!processed) {
        this.deadLetterRequested.set(next.id, {
          device: device.name,
          stream: connection.stream,
          node: connection.node,
          epoch: connection.epoch,
          seq,
        });
      }
    }
    // A requeue nack answered with nothing on the wire: a real client cannot tell it from a
    // rewind and waits for the seq, which never comes.
    if (requeue && outcome === 'stale') this.fail(`${device.name}'s requeue nack of ${seq} was answered with nothing`);
    if (requeue && outcome === 'ok') {
      connection.inbox = connection.inbox.filter((frame) => frame.seq < seq);
      connection.rewinding = seq;
      connection.expectedNext = seq;
      return;
    }
    // Dead-lettered (or processed elsewhere): done, the client goes on after it.
    position.lastSeq = seq;
    if (ackAfter) this.ack(device, 0);
    if (requeue) {
      // The nack limit (dead-lettered, or processed by another connection): the relay sends
      // what followed again, since the client dropped it.
      connection.inbox = connection.inbox.filter((frame) => frame.seq < seq);
      connection.expectedNext = Math.min(connection.expectedNext, seq + 1);
    }
  }

  /** The broker loses the active consumer (and says so at once). */
  lose(): void {
    this.queue.lose();
  }

  /** The active consumer's channel dies; the relay learns of it `noticeMs` later. */
  cut(noticeMs: number): void {
    // A channel the relay has not noticed yet is noticed first (RabbitMQ always tells, in the end).
    this.pendingNotice?.notice();
    this.queue.cut();
    this.broker.next();
    const timer = setTimeout(() => this.noticeNow(), noticeMs);
    this.pendingNotice = { cancel: () => clearTimeout(timer), notice: () => this.noticeNow() };
  }

  /** A node's link to the other nodes goes down (what it publishes fails, what they publish to it is lost) or comes back. */
  setBus(node: number, up: boolean): void {
    this.buses[node % this.options.nodes]?.setConnected(up);
  }

  private noticeNow(): void {
    this.pendingNotice?.cancel();
    this.pendingNotice = undefined;
    this.queue.noticeLoss();
  }

  // Observation --------------------------------------------------------------------------------

  /** Takes what each connection was sent and told, checking the per-frame guarantees. */
  observe(): void {
    this.checkProblems();
    for (const device of this.devices) {
      const connection = device.connection;
      if (!connection) continue;
      while (connection.read < connection.sub.frames.length) this.arrive(device, connection, connection.sub.frames[connection.read++]!);
      if (connection.sub.resetTo) {
        device.position = { ...connection.sub.resetTo };
        this.log.push(`${device.name} reset to ${connection.sub.resetTo.lastSeq}`);
        this.disconnect(device);
      } else if (connection.sub.resynced) {
        this.log.push(`${device.name} resync`);
        this.disconnect(device);
      } else if (connection.stream.closed) {
        this.fail(`${device.name}'s stream closed under it without a reset or resync`);
      }
    }
  }

  private arrive(device: Device, connection: Connection, frame: Frame): void {
    const { epoch } = connection;
    const where = `${device.name} (${connection.sub.session} on node${connection.node})`;
    if (frame.seq !== connection.expectedNext) this.fail(`${where} was sent seq ${frame.seq}, expected ${connection.expectedNext}`);
    if (frame.seq <= connection.highestReceived && !frame.redelivered) {
      this.fail(`${where} was sent seq ${frame.seq} again without redelivered`);
    }
    if (frame.seq - connection.acked > connection.sub.window) {
      this.fail(`${where} was sent seq ${frame.seq} with ${connection.acked} acked: more than its window of ${connection.sub.window}`);
    }
    const key = `${connection.node}:${epoch}`;
    const seen = device.seen.get(key) ?? new Set<string>();
    device.seen.set(key, seen);
    if (seen.has(frame.id) && !frame.redelivered) this.fail(`${where} was sent ${frame.id} again without redelivered`);
    seen.add(frame.id);
    const ids = this.idAt.get(epoch) ?? new Map<number, string>();
    const seqs = this.seqOf.get(epoch) ?? new Map<string, number>();
    this.idAt.set(epoch, ids);
    this.seqOf.set(epoch, seqs);
    if ((ids.get(frame.seq) ?? frame.id) !== frame.id) this.fail(`seq ${frame.seq} names ${ids.get(frame.seq)} and ${frame.id}`);
    if ((seqs.get(frame.id) ?? frame.seq) !== frame.seq) this.fail(`${frame.id} has seqs ${seqs.get(frame.id)} and ${frame.seq}`);
    ids.set(frame.seq, frame.id);
    seqs.set(frame.id, frame.seq);
    connection.expectedNext = frame.seq + 1;
    connection.highestReceived = Math.max(connection.highestReceived, frame.seq);
    connection.inbox.push(frame);
  }

  /** Every message id some connection was sent. */
  get delivered(): Set<string> {
    return new Set([...this.seqOf.values()].flatMap((ids) => [...ids.keys()]));
  }

  // The end of a run ---------------------------------------------------------------------------

  /** The store heals; devices reconnect, process and ack until nothing is left. */
  async finish(): Promise<void> {
    this.storeDown = false;
    for (const bus of this.buses) bus.setConnected(true);
    if (this.pendingNotice) this.noticeNow();
    if (this.devices.every((device) => !device.position)) await this.connect(this.devices[0]!, 0, false, this.options.prefetch);
    await this.catchUp();
    this.checkProblems();
  }

  private async catchUp(): Promise<void> {
    for (let round = 0; round < 60; round += 1) {
      for (const device of this.devices) {
        if (device.position && !device.connection) await this.connect(device, device.node, true, this.options.prefetch);
        this.observe();
        this.process(device, Number.MAX_SAFE_INTEGER);
        this.ack(device, 0);
      }
      await elapse(1_100);
      this.observe();
      if (round >= 3 && this.idle()) break;
    }
  }

  private idle(): boolean {
    const queueEmpty = this.queue.ready.length === 0 && this.queue.unacked.size === 0;
    const caughtUp = this.devices.every(
      ({ connection, position }) => !connection || (connection.inbox.length === 0 && position!.lastSeq >= connection.stream.head),
    );
    return queueEmpty && caughtUp;
  }

  /** The guarantees that hold once everything settled. */
  checkEnd(): void {
    this.checkProblems();
    const delivered = this.delivered;
    const lost = this.published.filter((id) => !delivered.has(id));
    if (lost.length > 0) this.fail(`never delivered to any client: ${lost.join(', ')}`);
    const settled = [...this.brokerAcked, ...this.brokerRejected];
    const twice = settled.filter((id, index) => settled.indexOf(id) !== index);
    if (twice.length > 0) this.fail(`settled with RabbitMQ more than once: ${twice.join(', ')}`);
    const unsettled = this.published.filter((id) => !settled.includes(id));
    if (unsettled.length > 0) this.fail(`never settled with RabbitMQ: ${unsettled.join(', ')}`);
    if (this.queue.ready.length + this.queue.unacked.size > 0) {
      this.fail(`queue not empty: ${this.queue.ready.length} ready, ${this.queue.unacked.size} unacked`);
    }
    for (const { name, connection, position } of this.devices) {
      if (connection && position!.lastSeq < connection.stream.head) {
        this.fail(
          `${name} is stuck at ${position!.lastSeq} (head ${connection.stream.head}, waiting for ${connection.rewinding ?? '-'}): ${JSON.stringify(connection.stream.snapshot())}`,
        );
      }
    }
  }

  /** Every device leaves; the streams close: nothing comes back to the queue. */
  async leave(): Promise<void> {
    for (const device of this.devices) this.disconnect(device);
    await elapse(this.options.lingerMs + 10_000);
    this.checkProblems();
    if (this.queue.ready.length + this.queue.unacked.size > 0) this.fail('messages came back to the queue after the last client left');
  }
}

// Commands -----------------------------------------------------------------------------------

export type Command =
  | { kind: 'publish'; count: number }
  | { kind: 'connect'; device: number; node: number; withPosition: boolean; window: number }
  | { kind: 'process'; device: number; count: number }
  | { kind: 'ack'; device: number; back: number }
  | { kind: 'nack'; device: number; requeue: boolean; ackAfter: boolean }
  | { kind: 'disconnect'; device: number }
  | { kind: 'lose' }
  | { kind: 'cut'; noticeMs: number }
  | { kind: 'elapse'; ms: number }
  | { kind: 'store'; down: boolean }
  | { kind: 'bus'; node: number; up: boolean };

const device = fc.nat(DEVICES - 1);
const command = (prefetch: number): fc.Arbitrary<Command> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('publish' as const), count: fc.integer({ min: 1, max: 4 }) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        kind: fc.constant('connect' as const),
        device,
        node: fc.nat(1),
        withPosition: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, fc.constant(false)),
        window: fc.integer({ min: 1, max: prefetch }),
      }),
    },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('process' as const), device, count: fc.integer({ min: 1, max: 3 }) }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('ack' as const), device, back: fc.nat(2) }) },
    {
      weight: 3,
      arbitrary: fc.record({ kind: fc.constant('nack' as const), device, requeue: fc.boolean(), ackAfter: fc.boolean() }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('disconnect' as const), device }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'lose' as const }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('cut' as const), noticeMs: fc.integer({ min: 0, max: 2_000 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('elapse' as const), ms: fc.integer({ min: 1, max: 6_000 }) }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('store' as const), down: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('bus' as const), node: fc.nat(1), up: fc.boolean() }) },
  );

async function apply(world: World, step: Command): Promise<void> {
  world.log.push(JSON.stringify(step));
  const target = 'device' in step ? world.devices[step.device]! : undefined;
  switch (step.kind) {
    case 'publish':
      return world.publish(step.count);
    case 'connect':
      return world.connect(target!, step.node, step.withPosition, step.window);
    case 'process':
      return world.process(target!, step.count);
    case 'ack':
      return world.ack(target!, step.back);
    case 'nack':
      return world.nack(target!, step.requeue, step.ackAfter);
    case 'disconnect':
      return world.disconnect(target!);
    case 'lose':
      return world.lose();
    case 'cut':
      return world.cut(step.noticeMs);
    case 'elapse':
      await elapse(step.ms);
      return;
    case 'store':
      world.storeDown = step.down;
      return;
    case 'bus':
      return world.setBus(step.node, step.up);
  }
}

/** A run: options (some fixed by `fixed`) and 10 to `maxSteps` commands. */
export function scenario(fixed: Partial<ModelOptions>, maxSteps: number): fc.Arbitrary<{ options: ModelOptions; steps: Command[] }> {
  const options: fc.Arbitrary<ModelOptions> = fc.record({
    nodes: fc.constant(1),
    prefetch: fc.integer({ min: 2, max: 6 }),
    nackLimit: fc.integer({ min: 1, max: 3 }),
    lingerMs: fc.constantFrom(0, 3_000),
    storeAckIntervalMs: fc.constantFrom(0, 1_000),
  });
  return options
    .map((chosen) => ({ ...chosen, ...fixed }))
    .chain((chosen) =>
      fc.record({
        options: fc.constant(chosen),
        steps: fc.array(command(chosen.prefetch), { minLength: 10, maxLength: maxSteps, size: 'max' }),
      }),
    );
}

/** Runs one scenario to its end and checks every guarantee (throws a Violation on the first broken one). */
export async function runScenario({ options, steps }: { options: ModelOptions; steps: Command[] }): Promise<World> {
  const world = new World(options);
  for (const step of steps) {
    await apply(world, step);
    await settle();
    world.observe();
  }
  await world.finish();
  world.checkEnd();
  await world.leave();
  return world;
}
