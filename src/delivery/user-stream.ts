/**
 * One user's delivery on this node: one RabbitMQ consumer, any number of connections. It
 * coordinates small parts, each the home of one guarantee:
 * - `ConsumerSupervisor`: one consumer at a time, restarted with backoff while wanted;
 * - `NumberingIntake`: the consumer's deliveries numbered by the store, in queue order;
 * - `InFlightLedger`: what the consumer holds, and the exact broker ack for an acked mark;
 * - `ConnectionCursor`: each connection's position, window and history pump;
 * - `DeadLetterIntents`: dead-letter requests kept until RabbitMQ took the message;
 * - `AckedMarkWriter`: the acked mark written to the store.
 *
 * What the stream itself guarantees:
 * - a message is acked to RabbitMQ only once some connection acked its seq (cumulatively) in
 *   the epoch it was numbered in; one at or below the acked mark is acked without being sent
 *   again, unless a client asked to dead-letter it, in which case it is rejected;
 * - a store that is behind what this node or a client has seen (it lost writes: a restart from
 *   an older append-only file, a failover to a lagging replica) ends the epoch: every
 *   connection gets `reset`, nothing is acked on the strength of the old numbering;
 * - when the consumer is lost, its unacked messages return to the queue in order and come back
 *   with the same seqs; connections keep their position and continue where they were.
 */
import type { RelayEvents } from '../events.js';
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import type { SeqStore, StreamMeta } from '../store/store.js';
import { AckedMarkWriter } from './acked-mark-writer.js';
import { backgroundClock, type Clock, type TimerHandle } from './background-clock.js';
import { ConnectionCursor, type AckOutcome, type CursorSource, type Subscriber } from './connection-cursor.js';
import type { ConsumerFactory, Delivery } from './consumer.js';
import { ConsumerSupervisor, type ConsumerSession } from './consumer-supervisor.js';
import { DeadLetterIntents } from './dead-letter-intents.js';
import type { HeldMessage } from './inflight-ledger.js';
import { NumberingIntake, type Numbered } from './numbering-intake.js';

export type { AckOutcome, Subscriber };

export interface ResumeRequest {
  epoch: string;
  lastSeq: number;
}

export interface AttachResult {
  epoch: string;
  lastSeq: number;
  resumed: boolean;
  recovered: boolean;
  /** Set when the client's epoch is gone: send `reset` before `welcome`. */
  reset?: { epoch: string; lastSeq: number; reason: string };
  /** Set when the resume position was ahead of the store (which then lost its epoch). */
  warning?: string;
}

export interface UserStreamOptions {
  user: string;
  store: SeqStore;
  consumers: ConsumerFactory;
  /** The consumer's prefetch: the largest window any connection may get. */
  prefetch: number;
  /** A client `nack` with requeue of the same seq past this many times dead-letters it. */
  nackLimit: number;
  maxMessageBytes: number;
  logger: Logger;
  /** Delay before restarting a lost consumer, by attempt (1, 2, ...). */
  restartDelayMs?: (attempt: number) => number;
  /** Metrics and logs listen here; never in the way of delivery. */
  events?: RelayEvents;
  /**
   * How long the consumer is kept after the last connection left (default 0: released at once).
   * A client that reconnects within it (a network blip, a reconnect storm) joins the same stream:
   * no channel is closed and opened again, and what the consumer holds is sent from memory.
   */
  lingerMs?: number;
  /** How long an acked mark may wait before it is written to the store (see AckedMarkWriter). */
  storeAckIntervalMs?: number;
  clock?: Clock;
  /** Called once the stream has no connection left and has released its consumer. */
  onIdle?: () => void;
}

/** The stream closed while a connection was being attached: attach to a new one. */
export class StreamClosedError extends Error {
  /** Set when the stream closed because this attach found the store behind the client (see AttachResult.warning). */
  readonly warning: string | undefined;

  constructor(warning?: string) {
    super('user stream closed');
    this.name = 'StreamClosedError';
    this.warning = warning;
  }
}

/** How long a closing stream waits for the store to number what its consumer received. */
const NUMBERING_WAIT_MS = 3_000;
/** How long a closing stream waits for the store to take its acked mark. */
const MARK_WAIT_MS = 2_000;

export class UserStream implements CursorSource {
  readonly user: string;
  epoch = '';
  head = 0;
  private acked = 0;
  private loaded = false;
  private readonly connections = new Map<Subscriber, ConnectionCursor>();
  private readonly supervisor: ConsumerSupervisor;
  /** Numbers the current consumer's deliveries (a new one per consumer). */
  private intake: NumberingIntake | undefined;
  private readonly intents: DeadLetterIntents;
  private readonly markWriter: AckedMarkWriter;
  private readonly clock: Clock;
  private lingerTimer: TimerHandle | undefined;
  private epochGone = false;
  /** Highest seq sent to any connection of this stream. */
  private highestSentAny = 0;
  private closePromise: Promise<void> | undefined;
  private degraded: string | undefined;
  /** Set while a broker ack is scheduled for the end of this turn of the event loop. */
  private brokerAckScheduled = false;

  constructor(private readonly options: UserStreamOptions) {
    this.user = options.user;
    this.clock = options.clock ?? backgroundClock;
    const { store, logger } = options;
    this.markWriter = new AckedMarkWriter({
      // The epoch is set when the stream loads, before any connection can ack.
      write: (seq) => store.ack(this.user, this.epoch, seq),
      intervalMs: options.storeAckIntervalMs ?? 0,
      clock: this.clock,
      onEpochGone: () => this.epochLost('epoch-lost'),
      onError: (error) => logger.warn({ user: this.user, err: errorMessage(error) }, 'could not record ack in the store; retrying'),
    });
    this.intents = new DeadLetterIntents({
      user: this.user,
      store,
      logger,
      clock: this.clock,
      epoch: () => this.epoch,
      onStored: (seq) => this.rejectHeld(seq),
      onDropped: () => this.scheduleBrokerAck(),
      onEpochGone: () => this.epochLost('epoch-lost'),
    });
    this.supervisor = new ConsumerSupervisor({
      user: this.user,
      prefetch: options.prefetch,
      consumers: options.consumers,
      logger,
      clock: this.clock,
      ...(options.restartDelayMs ? { restartDelayMs: options.restartDelayMs } : {}),
      wire: (session) => this.wire(session),
      onStarted: () => this.setHealthy(),
    });
  }

  get closed(): boolean {
    return this.closePromise !== undefined;
  }

  /** For connections' pumps: nothing more is sent once the stream closes. */
  get closing(): boolean {
    return this.closed;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Seqs delivered by RabbitMQ and not yet acked to it. */
  get inflightCount(): number {
    return this.supervisor.session?.ledger.size ?? 0;
  }

  /** True while the stream keeps its consumer with no connection (see `lingerMs`). */
  get lingering(): boolean {
    return this.lingerTimer !== undefined;
  }

  /** Why delivery to this user is paused, if it is (told to a connection after its welcome). */
  get degradedReason(): string | undefined {
    return this.degraded;
  }

  /**
   * Adds a connection at the position its `hello` asked for (see docs/PROTOCOL.md, Resume) and
   * starts the consumer if this is the first one. Rejects when the store or the broker is
   * unavailable, and with StreamClosedError when the stream closed meanwhile.
   */
  async attach(sub: Subscriber, resume: ResumeRequest | undefined): Promise<AttachResult> {
    const { meta, warning } = await this.loadMeta(resume);
    const result = this.resolvePosition(resume, meta.start);
    if (warning) result.warning = warning;
    const cursor = new ConnectionCursor(
      sub,
      result.lastSeq,
      // Anything another connection of this user was sent may have reached this client too
      // (a reconnect can arrive before the old connection is gone): mark it redelivered.
      Math.max(this.highestSentAny, resume && !result.reset ? Math.max(resume.lastSeq, result.lastSeq) : result.lastSeq),
      this,
      this.clock,
      this.options.logger,
    );
    this.connections.set(sub, cursor);
    this.stopLinger();
    if (result.lastSeq > this.acked) this.advanceAcked(result.lastSeq);
    try {
      await this.supervisor.ensure();
    } catch (error) {
      cursor.detach();
      this.connections.delete(sub);
      if (this.connections.size === 0) this.closeInBackground();
      // The stream closed meanwhile (its supervisor refuses to start): attach to the next one.
      if (this.closed) throw new StreamClosedError();
      throw error;
    }
    if (this.closed) throw new StreamClosedError();
    cursor.pump();
    return result;
  }

  /**
   * Reads the user's numbering and checks it against what this stream and the client have seen.
   * A store behind either lost writes: its epoch is discarded, so that the next one starts fresh.
   */
  private async loadMeta(resume: ResumeRequest | undefined): Promise<{ meta: StreamMeta; warning: string | undefined }> {
    const { store } = this.options;
    let meta = await store.meta(this.user);
    if (this.closed) throw new StreamClosedError();
    const clientAhead = resume !== undefined && resume.epoch === meta.epoch && resume.lastSeq > meta.seq;
    const storeBehind = this.loaded && meta.epoch === this.epoch && meta.seq < this.head;
    const warning = clientAhead ? `lastSeq ${resume.lastSeq} is ahead of the stream (${meta.seq}): its numbering was lost` : undefined;
    if (clientAhead || storeBehind) {
      const seen = clientAhead ? resume.lastSeq : this.head;
      this.options.logger.warn({ user: this.user, storeSeq: meta.seq, seen }, 'state store is behind what was seen; ending its epoch');
      await store.discard(this.user, meta.epoch);
      if (this.loaded) {
        this.epochLost('epoch-lost');
        throw new StreamClosedError(warning);
      }
      meta = await store.meta(this.user);
      if (this.closed) throw new StreamClosedError();
    }
    if (this.loaded && meta.epoch !== this.epoch) {
      this.epochLost('epoch-lost');
      throw new StreamClosedError();
    }
    if (!this.loaded) {
      this.epoch = meta.epoch;
      this.head = meta.seq;
      this.acked = meta.acked;
      this.markWriter.known(meta.acked);
      this.loaded = true;
    } else {
      this.head = Math.max(this.head, meta.seq);
      if (meta.acked > this.acked) {
        // A connection on another node acked further: finish those messages here too.
        this.markWriter.known(meta.acked);
        this.advanceAcked(meta.acked);
      }
    }
    return { meta, warning };
  }

  private resolvePosition(resume: ResumeRequest | undefined, historyStart: number): AttachResult {
    const base = { epoch: this.epoch, resumed: false, recovered: true };
    if (!resume) return { ...base, lastSeq: this.acked };
    if (resume.epoch !== this.epoch) {
      return { ...base, lastSeq: this.acked, recovered: false, reset: { epoch: this.epoch, lastSeq: this.acked, reason: 'epoch-unknown' } };
    }
    if (resume.lastSeq >= this.acked || historyStart <= resume.lastSeq + 1) {
      return { ...base, lastSeq: resume.lastSeq, resumed: true };
    }
    return { ...base, lastSeq: Math.min(historyStart - 1, this.acked), resumed: true, recovered: false };
  }

  /**
   * Removes a connection. The last one out releases the consumer (its messages return to the
   * queue in order), after `lingerMs` if set and unless a connection joins meanwhile.
   */
  detach(sub: Subscriber): void {
    const cursor = this.connections.get(sub);
    if (!cursor) return;
    cursor.detach();
    this.connections.delete(sub);
    if (this.connections.size === 0) this.linger();
  }

  private linger(): void {
    const lingerMs = this.options.lingerMs ?? 0;
    // Without a consumer there is nothing to keep.
    if (lingerMs <= 0 || !this.supervisor.session || this.closed) {
      this.closeInBackground();
      return;
    }
    this.lingerTimer ??= this.clock.setTimeout(() => {
      this.lingerTimer = undefined;
      if (this.connections.size === 0) this.closeInBackground();
    }, lingerMs);
  }

  private stopLinger(): void {
    this.lingerTimer?.cancel();
    this.lingerTimer = undefined;
  }

  /** Whether an ack of `seq` would move this connection forward (a seq sent and not yet acked). */
  isProgress(sub: Subscriber, seq: number): boolean {
    return this.connections.get(sub)?.isProgress(seq) ?? false;
  }

  /** Messages sent on this connection and not yet acked. */
  unacked(sub: Subscriber): number {
    return this.connections.get(sub)?.unacked ?? 0;
  }

  /** Cumulative ack from one connection. */
  ack(sub: Subscriber, seq: number): AckOutcome {
    const cursor = this.connections.get(sub);
    if (!cursor) return 'unknown';
    const outcome = cursor.ack(seq);
    if (outcome !== 'ok') return outcome;
    if (seq > this.acked) this.advanceAcked(seq);
    cursor.pump();
    return 'ok';
  }

  /**
   * A client could not process one seq. `requeue`: the connection is rewound and the seq sent
   * again (then everything after it, in order), `nackLimit` times; past that, or without
   * `requeue`, the message is dead-lettered and the client goes on after it.
   */
  nack(sub: Subscriber, seq: number, requeue: boolean): AckOutcome | 'dead-lettered' {
    const cursor = this.connections.get(sub);
    if (!cursor?.isProgress(seq)) return 'unknown';
    this.options.events?.emit('nacked', requeue);
    if (requeue && cursor.nacked(seq) <= this.options.nackLimit) {
      cursor.rewindTo(seq - 1);
      cursor.pump();
      return 'ok';
    }
    // At or below the acked mark another connection processed it: nothing to dead-letter.
    if (seq <= this.acked) return 'stale';
    this.intents.add(seq, requeue ? 'nack-limit' : 'client-nack');
    if (requeue) {
      // The client dropped what followed the seq it asked to see again: send that again.
      cursor.rewindTo(seq);
      cursor.pump();
    }
    return 'dead-lettered';
  }

  /** Called by the connection when its send buffer drained. */
  resume(sub: Subscriber): void {
    this.connections.get(sub)?.pump();
  }

  /** Numbers and restarts now instead of at the next retry (a dependency came back). */
  retryNow(): void {
    this.intake?.retryNow();
    if (this.connections.size > 0) this.supervisor.retryNow();
  }

  /** A snapshot for diagnostics (logs, operator tools, tests). */
  snapshot(): Record<string, unknown> {
    const session = this.supervisor.session;
    return {
      user: this.user,
      epoch: this.epoch,
      head: this.head,
      acked: this.acked,
      consumer: session !== undefined,
      starting: this.supervisor.isStarting,
      restartScheduled: this.supervisor.restartScheduled,
      lingering: this.lingering,
      restartAttempt: this.supervisor.restartAttempt,
      degraded: this.degraded,
      closed: this.closed,
      inflight: session?.ledger.seqs() ?? [],
      outstanding: session?.ledger.outstandingCount ?? 0,
      pending: this.intake?.pendingCount ?? 0,
      assigning: this.intake?.busy ?? false,
      deadLetterIntents: this.intents.size,
      connections: [...this.connections.values()].map((c) => ({
        cursor: c.cursor,
        acked: c.acked,
        window: c.sub.window,
        writable: c.sub.writable(),
      })),
    };
  }

  // CursorSource: what connections read.

  held(seq: number): HeldMessage | undefined {
    return this.supervisor.session?.ledger.get(seq);
  }

  history(epoch: string, from: number, to: number): ReturnType<SeqStore['range']> {
    return this.options.store.range(this.user, epoch, from, to);
  }

  sent(seq: number, redelivered: boolean): void {
    if (seq > this.highestSentAny) this.highestSentAny = seq;
    this.options.events?.emit('delivered', 1, redelivered ? 1 : 0);
  }

  /** The store lost this user's numbering: every connection is reset and the stream closes. */
  epochLost(reason = 'epoch-lost'): void {
    this.epochGone = true;
    this.markWriter.stop();
    if (this.closed) return;
    this.options.events?.emit('epoch-lost');
    this.options.logger.warn({ user: this.user }, 'state store lost the user numbering; resetting connections');
    const subs = [...this.connections.keys()];
    this.closeInBackground();
    this.options.store.meta(this.user).then(
      (meta) => {
        for (const sub of subs) sub.reset(meta.epoch, meta.acked, reason);
      },
      () => {
        for (const sub of subs) sub.resync('state store unavailable');
      },
    );
  }

  // The consumer's side.

  /** Wires a new consumer: its own intake numbers its deliveries. */
  private wire(session: ConsumerSession): { onDelivery(delivery: Delivery): void; onLost(reason: string): void } {
    const intake = new NumberingIntake(
      {
        user: this.user,
        store: this.options.store,
        maxMessageBytes: this.options.maxMessageBytes,
        logger: this.options.logger,
        clock: this.clock,
        position: () => ({ epoch: this.epoch, seen: this.head }),
        onNumbered: (batch) => this.accept(session, batch),
        onInvalid: (delivery, reason) => this.rejectInvalid(session, delivery, reason),
        onEpochGone: () => this.epochLost('epoch-lost'),
        onStoreHealth: (up) => {
          if (!up) this.setDegraded('state store unavailable');
          else if (this.supervisor.session) this.setHealthy();
        },
      },
      session.ready,
    );
    this.intake?.stop();
    this.intake = intake;
    return {
      onDelivery: (delivery) => {
        session.ledger.received(delivery.tag);
        intake.push(delivery);
      },
      onLost: (reason) => {
        intake.stop();
        this.consumerLost(reason);
      },
    };
  }

  private consumerLost(reason: string): void {
    this.options.events?.emit('consumer-lost', reason);
    if (this.closed) return;
    if (this.connections.size === 0) {
      this.stopLinger();
      this.closeInBackground();
      return;
    }
    this.options.logger.warn({ user: this.user, reason }, 'consumer lost; restarting');
    this.setDegraded(reason);
    this.supervisor.restartLater();
  }

  private accept(session: ConsumerSession, batch: Numbered[]): void {
    for (const { delivery, seq, deadLetter, fragment, ts } of batch) {
      if (deadLetter) this.intents.known(seq);
      if (this.intents.has(seq)) {
        // Held until the intent is stored, then rejected (never acked, whatever the mark).
        session.ledger.hold(seq, delivery.tag, { fragment, redelivered: delivery.redelivered, ts });
        if (this.intents.isStored(seq)) this.rejectHeld(seq);
        continue;
      }
      if (seq <= this.acked) {
        // A client already processed this seq in this epoch: finish it without sending it again.
        session.ledger.settled(delivery.tag);
        session.handle?.ack(delivery.tag, false);
        continue;
      }
      session.ledger.hold(seq, delivery.tag, { fragment, redelivered: delivery.redelivered, ts });
      if (seq > this.head) this.head = seq;
    }
    for (const cursor of this.connections.values()) cursor.pump();
  }

  private rejectInvalid(session: ConsumerSession, delivery: Delivery, reason: string): void {
    session.ledger.settled(delivery.tag);
    session.handle?.reject(delivery.tag, false);
    this.options.events?.emit('dead-lettered', 'invalid-message');
    this.options.logger.warn({ user: this.user, reason }, 'invalid message dead-lettered');
  }

  /** Rejects a message with a stored dead-letter intent, if the consumer holds it now. */
  private rejectHeld(seq: number): void {
    const session = this.supervisor.session;
    const handle = session?.handle;
    if (!session || !handle || !session.ledger.has(seq)) return;
    const reason = this.intents.reason(seq);
    for (const tag of session.ledger.take(seq)) handle.reject(tag, false);
    this.options.events?.emit('dead-lettered', reason);
    this.options.logger.info({ user: this.user, seq, reason }, 'message dead-lettered');
    handle.sync().then(
      () => this.intents.done(seq),
      // The channel died under the reject: RabbitMQ has the message back and delivers it again,
      // and the intent (still in the store) rejects it then.
      () => undefined,
    );
  }

  /**
   * Moves the acked mark. RabbitMQ learns of it once per turn of the event loop (acks of one
   * burst arrive together: one broker ack), the store once per storeAckIntervalMs and store round
   * trip. Until RabbitMQ is acked the messages stay in flight; a crash in between redelivers them
   * with the same seqs, and a resuming client is past them.
   */
  private advanceAcked(seq: number): void {
    this.acked = seq;
    this.scheduleBrokerAck();
    this.markWriter.moved(seq);
  }

  private scheduleBrokerAck(): void {
    if (this.brokerAckScheduled) return;
    this.brokerAckScheduled = true;
    setImmediate(() => {
      this.brokerAckScheduled = false;
      this.ackBroker();
    });
  }

  /** Acks every held message at or below the acked mark, except those to dead-letter. */
  private ackBroker(): void {
    const session = this.supervisor.session;
    if (!session?.handle) return;
    const settled = session.ledger.settleUpTo(this.acked, (seq) => this.intents.has(seq));
    if (!settled.ack) return;
    if (settled.ack.multiple) session.handle.ack(settled.ack.tag, true);
    else for (const tag of settled.ack.tags) session.handle.ack(tag, false);
    const now = this.clock.now();
    for (const ts of settled.timestamps) this.options.events?.emit('delivery-latency', now - ts);
    this.options.events?.emit('acked', settled.count);
  }

  private setDegraded(reason: string): void {
    if (this.degraded) return;
    this.degraded = reason;
    for (const sub of this.connections.keys()) sub.status('degraded', reason);
  }

  private setHealthy(): void {
    if (!this.degraded) return;
    this.degraded = undefined;
    for (const sub of this.connections.keys()) sub.status('ok');
  }

  private closeInBackground(): void {
    background(this.close(), (error: unknown) =>
      this.options.logger.error({ user: this.user, err: errorMessage(error) }, 'closing the user stream failed'),
    );
  }

  /**
   * Releases the consumer: whatever it received is numbered first (when the store answers), the
   * acked mark goes to the store and to RabbitMQ, then the channel is closed and its unacked
   * messages return to the queue in order. Idempotent.
   */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      this.supervisor.stop();
      this.stopLinger();
      if (this.intake && this.supervisor.session && !this.epochGone) await settledWithin(this.intake.drain(), NUMBERING_WAIT_MS);
      this.intake?.stop();
      this.intents.stop();
      // What clients acked goes to the store and to RabbitMQ before the channel closes (else
      // it comes back, and the next stream would start from an older mark).
      await settledWithin(this.markWriter.settle(), MARK_WAIT_MS);
      this.markWriter.stop();
      this.ackBroker();
      for (const cursor of this.connections.values()) cursor.detach();
      this.connections.clear();
      await this.supervisor.close();
      this.options.onIdle?.();
    })();
    return this.closePromise;
  }
}
