/**
 * One user's delivery on this node: one RabbitMQ consumer, any number of connections.
 *
 * This module guarantees, for every connection attached to it:
 * - it is sent seqs in strictly increasing order, each exactly once, starting after the position
 *   agreed in `welcome` (a client `nack` with requeue rewinds it, and the rewound seqs are sent
 *   again in order, marked `redelivered`);
 * - at most `window` seqs are sent and not yet acked;
 * - a message is acked to RabbitMQ only once some connection acked its seq (cumulatively), and a
 *   message whose seq is at or below the acked mark is acked without being sent again;
 * - when the consumer is lost, its unacked messages return to the queue in order and come back
 *   with the same seqs; connections keep their position and continue where they were.
 * Seqs come from the state store (see store.ts), so they are stable across consumers and nodes.
 */
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { settledWithin } from '../settle.js';
import { errorMessage } from '../errors.js';
import type { SeqStore } from '../store/store.js';
import { AckedMarkWriter } from './acked-mark-writer.js';
import type { ConsumerFactory, ConsumerHandle, Delivery } from './consumer.js';
import { decodeMessage, msgFrame } from './message-codec.js';

/** What the stream needs from a client connection. */
export interface Subscriber {
  readonly session: string;
  /** Messages the connection may hold unacked. */
  readonly window: number;
  send(frame: string): void;
  /** False while the socket's send buffer is over its high-water mark; `resume` is called later. */
  writable(): boolean;
  status(state: 'ok' | 'degraded', reason?: string): void;
  /** The user's numbering was lost: tell the client (`reset`) and close so that it reconnects. */
  reset(epoch: string, lastSeq: number, reason: string): void;
  /** History no longer holds the next seq for this connection: close so that it resumes. */
  resync(reason: string): void;
}

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
  /** Set when the resume position was ahead of the stream. */
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
  /**
   * How long an acked mark may wait before it is written to the store (default 0: at once, one
   * write in flight). Acks in between become one write. RabbitMQ is acked at once regardless, and
   * a stream that closes writes its mark before it releases the consumer. Meanwhile the store's
   * mark is behind RabbitMQ by at most this much: history is trimmed that much later, and a
   * stream that starts from the store's mark (on a restarted node, or on another node while this
   * one still runs) sends those seqs again from history, marked redelivered, to a connection
   * that did not resume past them.
   */
  storeAckIntervalMs?: number;
  /** Called once the stream has no connection left and has released its consumer. */
  onIdle?: () => void;
}

interface InFlight {
  tags: number[];
  fragment: string;
  redelivered: boolean;
  /** The producer's timestamp (ms), for the delivery latency. */
  ts: number;
}

interface Connection {
  sub: Subscriber;
  /** Highest seq sent. */
  cursor: number;
  /** Highest seq the client acked (or said it processed). */
  acked: number;
  /** Highest seq ever sent on this connection (for `redelivered` after a rewind). */
  highestSent: number;
  pumping: boolean;
  repump: boolean;
  nacks: Map<number, number>;
  detached: boolean;
}

/** The stream closed while a connection was being attached: attach to a new one. */
export class StreamClosedError extends Error {
  constructor() {
    super('user stream closed');
    this.name = 'StreamClosedError';
  }
}

export type AckOutcome = 'ok' | 'stale' | 'unknown';

const HISTORY_BATCH = 100;

export class UserStream {
  readonly user: string;
  private epoch = '';
  private head = 0;
  private acked = 0;
  private loaded = false;
  private readonly inflight = new Map<number, InFlight>();
  private readonly outstanding = new Set<number>();
  private readonly deadLetterSeqs = new Set<number>();
  private readonly connections = new Map<Subscriber, Connection>();
  private consumer: ConsumerHandle | undefined;
  private starting: Promise<void> | undefined;
  private generation = 0;
  private pending: Delivery[] = [];
  private assigning = false;
  private restartTimer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private assignRetryTimer: NodeJS.Timeout | undefined;
  private epochGone = false;
  /** Highest seq sent to any connection of this stream. */
  private highestSentAny = 0;
  private restartAttempt = 0;
  private closing: Promise<void> | undefined;
  private degraded: string | undefined;
  /** Set while a broker ack is scheduled for the end of this turn of the event loop. */
  private brokerAckScheduled = false;
  /** Writes the acked mark to the store (see AckedMarkWriter). */
  private readonly markWriter: AckedMarkWriter;

  constructor(private readonly options: UserStreamOptions) {
    this.user = options.user;
    this.markWriter = new AckedMarkWriter({
      // The epoch is set when the stream loads, before any connection can ack.
      write: (seq) => options.store.ack(this.user, this.epoch, seq),
      intervalMs: options.storeAckIntervalMs ?? 0,
      onEpochGone: () => this.epochLost('epoch-lost'),
      onError: (error) => options.logger.warn({ user: this.user, err: errorMessage(error) }, 'could not record ack in the store; retrying'),
    });
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Seqs delivered by RabbitMQ and not yet acked to it. */
  get inflightCount(): number {
    return this.inflight.size;
  }

  /**
   * Adds a connection at the position its `hello` asked for (see PROTOCOL.md, Resume) and starts
   * the consumer if this is the first one. Rejects when the store or the broker is unavailable.
   */
  async attach(sub: Subscriber, resume: ResumeRequest | undefined): Promise<AttachResult> {
    const meta = await this.options.store.meta(this.user);
    if (this.closing) throw new StreamClosedError();
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
    const result = this.resolvePosition(resume, meta.start);
    const connection: Connection = {
      sub,
      cursor: result.lastSeq,
      acked: result.lastSeq,
      // Anything another connection of this user was sent may have reached this client too
      // (a reconnect can arrive before the old connection is gone): mark it redelivered.
      highestSent: Math.max(this.highestSentAny, resume && !result.reset ? Math.max(resume.lastSeq, result.lastSeq) : result.lastSeq),
      pumping: false,
      repump: false,
      nacks: new Map(),
      detached: false,
    };
    this.connections.set(sub, connection);
    this.stopLinger();
    if (result.lastSeq > this.acked) this.advanceAcked(result.lastSeq);
    try {
      await this.ensureConsumer();
    } catch (error) {
      this.connections.delete(sub);
      if (this.connections.size === 0) void this.close();
      throw error;
    }
    if (this.closing) throw new StreamClosedError();
    void this.pump(connection);
    return result;
  }

  private resolvePosition(resume: ResumeRequest | undefined, historyStart: number): AttachResult {
    const base = { epoch: this.epoch, resumed: false, recovered: true };
    if (!resume) return { ...base, lastSeq: this.acked };
    if (resume.epoch !== this.epoch) {
      return {
        ...base,
        lastSeq: this.acked,
        recovered: false,
        reset: { epoch: this.epoch, lastSeq: this.acked, reason: 'epoch-unknown' },
      };
    }
    if (resume.lastSeq > this.head) {
      return { ...base, lastSeq: this.acked, recovered: false, warning: `lastSeq ${resume.lastSeq} is ahead of the stream (${this.head})` };
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
    const connection = this.connections.get(sub);
    if (!connection) return;
    connection.detached = true;
    this.connections.delete(sub);
    if (this.connections.size === 0) this.linger();
  }

  private linger(): void {
    const lingerMs = this.options.lingerMs ?? 0;
    // Without a consumer there is nothing to keep.
    if (lingerMs <= 0 || !this.consumer || this.closing) {
      void this.close();
      return;
    }
    if (this.lingerTimer) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = undefined;
      if (this.connections.size === 0) void this.close();
    }, lingerMs);
    this.lingerTimer.unref();
  }

  private stopLinger(): void {
    if (!this.lingerTimer) return;
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
  }

  /** True while the stream keeps its consumer with no connection (see `lingerMs`). */
  get lingering(): boolean {
    return this.lingerTimer !== undefined;
  }

  /** Whether an ack of `seq` would move this connection forward (a seq sent and not yet acked). */
  isProgress(sub: Subscriber, seq: number): boolean {
    const connection = this.connections.get(sub);
    return connection !== undefined && seq > connection.acked && seq <= connection.cursor;
  }

  /** Cumulative ack from one connection. */
  ack(sub: Subscriber, seq: number): AckOutcome {
    const connection = this.connections.get(sub);
    if (!connection || seq > connection.cursor) return 'unknown';
    if (seq <= connection.acked) return 'stale';
    connection.acked = seq;
    for (const nacked of connection.nacks.keys()) if (nacked <= seq) connection.nacks.delete(nacked);
    if (seq > this.acked) this.advanceAcked(seq);
    void this.pump(connection);
    return 'ok';
  }

  /**
   * A client could not process one seq. `requeue`: the connection is rewound and the seq sent
   * again (then everything after it, in order), `nackLimit` times; past that, or without
   * `requeue`, the message is dead-lettered and the client goes on after it.
   */
  nack(sub: Subscriber, seq: number, requeue: boolean): AckOutcome | 'dead-lettered' {
    const connection = this.connections.get(sub);
    if (!connection || seq > connection.cursor || seq <= connection.acked) return 'unknown';
    if (requeue) {
      const attempts = (connection.nacks.get(seq) ?? 0) + 1;
      connection.nacks.set(seq, attempts);
      this.options.events?.emit('nacked', true);
      if (attempts <= this.options.nackLimit) {
        connection.cursor = seq - 1;
        void this.pump(connection);
        return 'ok';
      }
    }
    if (!requeue) this.options.events?.emit('nacked', false);
    // Another connection of this user already processed it: nothing to dead-letter.
    if (!this.deadLetter(seq, requeue ? 'nack-limit' : 'client-nack')) return 'stale';
    if (requeue && connection.cursor > seq) {
      // The client dropped what followed the seq it asked to see again: send that again.
      connection.cursor = seq;
      void this.pump(connection);
    }
    return 'dead-lettered';
  }

  /** Why delivery to this user is paused, if it is (told to a connection after its welcome). */
  get degradedReason(): string | undefined {
    return this.degraded;
  }

  /** A snapshot for diagnostics (logs, operator tools, tests). */
  snapshot(): Record<string, unknown> {
    return {
      user: this.user,
      epoch: this.epoch,
      head: this.head,
      acked: this.acked,
      consumer: this.consumer !== undefined,
      starting: this.starting !== undefined,
      restartScheduled: this.restartTimer !== undefined,
      lingering: this.lingering,
      restartAttempt: this.restartAttempt,
      degraded: this.degraded,
      closed: this.closed,
      inflight: [...this.inflight.keys()],
      outstanding: this.outstanding.size,
      pending: this.pending.length,
      assigning: this.assigning,
      connections: [...this.connections.values()].map((c) => ({ cursor: c.cursor, acked: c.acked, window: c.sub.window, pumping: c.pumping, writable: c.sub.writable() })),
    };
  }

  /** Messages sent on this connection and not yet acked. */
  unacked(sub: Subscriber): number {
    const connection = this.connections.get(sub);
    return connection ? connection.cursor - connection.acked : 0;
  }

  /** Restarts a lost consumer now instead of at its next backoff step (a dependency came back). */
  retryNow(): void {
    if (this.pending.length > 0 && !this.assigning) {
      if (this.assignRetryTimer) clearTimeout(this.assignRetryTimer);
      this.assignRetryTimer = undefined;
      void this.assignPending(this.generation);
    }
    if (this.consumer || this.closing || this.connections.size === 0) return;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    this.restartAttempt = 0;
    this.scheduleRestart();
  }

  /** Called by the connection when its send buffer drained. */
  resume(sub: Subscriber): void {
    const connection = this.connections.get(sub);
    if (connection) void this.pump(connection);
  }

  /** Dead-letters one seq; false when some connection already processed it (nothing to do). */
  private deadLetter(seq: number, reason: string): boolean {
    // At or below the acked mark (its broker ack may still be on its way): processed.
    if (seq <= this.acked) return false;
    const entry = this.inflight.get(seq);
    if (!entry) {
      // Not held by this consumer now: dead-letter it if RabbitMQ delivers it again.
      this.deadLetterSeqs.add(seq);
      return true;
    }
    this.options.events?.emit('dead-lettered', reason);
    this.inflight.delete(seq);
    for (const tag of entry.tags) {
      this.outstanding.delete(tag);
      this.consumer?.reject(tag, false);
    }
    this.options.logger.info({ user: this.user, seq, reason }, 'message dead-lettered');
    return true;
  }

  /**
   * Moves the acked mark. RabbitMQ learns of it once per turn of the event loop (acks of one
   * burst arrive together: one broker ack), the store once per storeAckIntervalMs and store round
   * trip, not once per client ack. Until RabbitMQ is acked the messages stay in flight; a crash
   * in between redelivers them with the same seqs, and a resuming client is past them.
   */
  private advanceAcked(seq: number): void {
    this.acked = seq;
    for (const dead of this.deadLetterSeqs) if (dead <= seq) this.deadLetterSeqs.delete(dead);
    if (!this.brokerAckScheduled) {
      this.brokerAckScheduled = true;
      setImmediate(() => {
        this.brokerAckScheduled = false;
        this.ackBroker(this.acked);
      });
    }
    this.markWriter.moved(seq);
  }

  /** Acks every in-flight message with seq <= `seq` to RabbitMQ, with one multiple-ack when that is exact. */
  private ackBroker(seq: number): void {
    const tags: number[] = [];
    let highest = 0;
    const now = Date.now();
    for (const [held, entry] of this.inflight) {
      if (held > seq) continue;
      this.inflight.delete(held);
      for (const tag of entry.tags) {
        tags.push(tag);
        if (tag > highest) highest = tag;
      }
      this.options.events?.emit('delivery-latency', now - entry.ts);
    }
    if (tags.length === 0 || !this.consumer) return;
    // Every tag being acked is outstanding; a multiple-ack up to `highest` is exact when no
    // other outstanding tag is at or below it.
    let below = 0;
    for (const tag of this.outstanding) if (tag <= highest) below += 1;
    if (below === tags.length) {
      this.consumer.ack(highest, true);
    } else {
      for (const tag of tags) this.consumer.ack(tag, false);
    }
    for (const tag of tags) this.outstanding.delete(tag);
    this.options.events?.emit('acked', tags.length);
  }

  private async ensureConsumer(): Promise<void> {
    if (this.consumer) return;
    this.starting ??= this.startConsumer().finally(() => {
      this.starting = undefined;
    });
    await this.starting;
  }

  private async startConsumer(): Promise<void> {
    const generation = ++this.generation;
    // Tags of any earlier consumer are void on a new channel (they would name other messages).
    this.inflight.clear();
    this.outstanding.clear();
    this.pending = [];
    const started = this.options.consumers(this.user, this.options.prefetch, {
      onDelivery: (delivery) => {
        if (generation !== this.generation) return;
        this.outstanding.add(delivery.tag);
        this.pending.push(delivery);
        // Deliveries parsed from one socket read arrive in one go: number them in one store call.
        if (this.pending.length === 1) queueMicrotask(() => void this.assignPending(generation));
      },
      onLost: (reason) => {
        if (generation !== this.generation) return;
        this.consumerLost(reason);
      },
    });
    let handle: ConsumerHandle;
    try {
      handle = await started;
    } catch (error) {
      // A set-up given up on may still complete; its deliveries must then be ignored.
      if (generation === this.generation) this.generation += 1;
      throw error;
    }
    if (this.closing || generation !== this.generation) {
      await handle.close();
      return;
    }
    this.consumer = handle;
    this.restartAttempt = 0;
    this.setHealthy();
  }

  private consumerLost(reason: string): void {
    this.generation += 1;
    this.consumer = undefined;
    this.inflight.clear();
    this.outstanding.clear();
    this.pending = [];
    this.options.events?.emit('consumer-lost', reason);
    if (this.closing) return;
    if (this.connections.size === 0) {
      this.stopLinger();
      void this.close();
      return;
    }
    this.options.logger.warn({ user: this.user, reason }, 'consumer lost; restarting');
    this.setDegraded(reason);
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    if (this.restartTimer || this.closing || this.connections.size === 0) return;
    this.restartAttempt += 1;
    const delay = (this.options.restartDelayMs ?? defaultRestartDelay)(this.restartAttempt);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.closing || this.consumer) return;
      this.ensureConsumer().then(
        // A start that lost its channel while starting ends without a consumer: try again.
        () => {
          if (!this.consumer) this.scheduleRestart();
        },
        (error: unknown) => {
          this.options.logger.warn({ user: this.user, err: errorMessage(error) }, 'consumer restart failed');
          this.scheduleRestart();
        },
      );
    }, delay);
    this.restartTimer.unref();
  }

  private setDegraded(reason: string): void {
    if (this.degraded) return;
    this.degraded = reason;
    for (const connection of this.connections.values()) connection.sub.status('degraded', reason);
  }

  private setHealthy(): void {
    if (!this.degraded) return;
    this.degraded = undefined;
    for (const connection of this.connections.values()) connection.sub.status('ok');
  }

  private scheduleAssignRetry(): void {
    if (this.assignRetryTimer) return;
    this.assignRetryTimer = setTimeout(() => {
      this.assignRetryTimer = undefined;
      // The consumer may have been replaced meanwhile: number what the current one holds.
      void this.assignPending(this.generation);
    }, 1_000);
    this.assignRetryTimer.unref();
  }

  private async assignPending(generation: number): Promise<void> {
    if (this.assigning) return;
    this.assigning = true;
    try {
      while (this.pending.length > 0 && generation === this.generation) {
        if (!this.consumer && this.starting) {
          // Deliveries can arrive before the consumer's set-up returned; settling one (an
          // invalid message is rejected at once) needs the handle.
          await this.starting.catch(() => undefined);
          continue;
        }
        const batch = this.pending.splice(0, 200);
        const accepted: { delivery: Delivery; id: string; fragment: string; ts: number }[] = [];
        for (const delivery of batch) {
          const decoded = decodeMessage(delivery.content, {
            messageId: delivery.messageId as string,
            contentType: delivery.contentType as string,
            timestamp: delivery.timestamp as number,
            headers: delivery.headers,
          }, this.options.maxMessageBytes);
          if (decoded.ok) {
            accepted.push({ delivery, id: decoded.key, fragment: decoded.fragment, ts: decoded.ts });
          } else {
            this.outstanding.delete(delivery.tag);
            this.consumer?.reject(delivery.tag, false);
            this.options.events?.emit('dead-lettered', 'invalid-message');
            this.options.logger.warn({ user: this.user, reason: decoded.reason }, 'invalid message dead-lettered');
          }
        }
        if (accepted.length === 0) continue;
        let seqs;
        try {
          seqs = await this.options.store.assign(this.user, this.epoch, this.head, accepted.map(({ id, fragment }) => ({ id, fragment })));
        } catch (error) {
          if (generation !== this.generation) return;
          // Keep them unacked on this consumer, in order, and try again. Closing the channel
          // instead would return them behind messages returned earlier (quorum queues do), and
          // they could then be numbered out of their queue order.
          this.pending.unshift(...accepted.map(({ delivery }) => delivery));
          this.options.logger.warn({ user: this.user, err: errorMessage(error) }, 'could not number deliveries; retrying');
          this.setDegraded('state store unavailable');
          this.scheduleAssignRetry();
          return;
        }
        if (generation !== this.generation) return;
        if (seqs === null) {
          this.epochLost('epoch-lost');
          return;
        }
        accepted.forEach(({ delivery, fragment, ts }, index) => this.accept(delivery, seqs[index]!.seq, fragment, ts));
        if (this.consumer) this.setHealthy();
        this.pumpAll();
      }
    } finally {
      this.assigning = false;
      // Deliveries of a newer consumer that arrived while an older batch was being numbered
      // found `assigning` set and were left to this loop, which gives up on its generation:
      // nothing else would number them (a full prefetch brings no further delivery to do it).
      const current = this.consumer !== undefined || this.starting !== undefined;
      if (generation !== this.generation && current && this.pending.length > 0 && !this.assignRetryTimer) {
        queueMicrotask(() => void this.assignPending(this.generation));
      }
    }
  }

  private accept(delivery: Delivery, seq: number, fragment: string, ts: number): void {
    if (seq <= this.acked) {
      // Some client already processed this seq: finish it without sending it again.
      this.outstanding.delete(delivery.tag);
      this.consumer?.ack(delivery.tag, false);
      return;
    }
    if (this.deadLetterSeqs.delete(seq)) {
      this.outstanding.delete(delivery.tag);
      this.consumer?.reject(delivery.tag, false);
      this.options.events?.emit('dead-lettered', 'client-nack');
      return;
    }
    const existing = this.inflight.get(seq);
    if (existing) {
      existing.tags.push(delivery.tag);
    } else {
      this.inflight.set(seq, { tags: [delivery.tag], fragment, redelivered: delivery.redelivered, ts });
    }
    if (seq > this.head) this.head = seq;
  }

  private pumpAll(): void {
    for (const connection of this.connections.values()) void this.pump(connection);
  }

  private canSend(connection: Connection): boolean {
    return (
      !connection.detached &&
      !this.closing &&
      connection.cursor < this.head &&
      connection.cursor - connection.acked < connection.sub.window &&
      connection.sub.writable()
    );
  }

  private sendOne(connection: Connection, seq: number, fragment: string, redelivered: boolean): void {
    const again = redelivered || seq <= connection.highestSent;
    connection.sub.send(msgFrame(seq, again, fragment));
    connection.cursor = seq;
    if (seq > connection.highestSent) connection.highestSent = seq;
    if (seq > this.highestSentAny) this.highestSentAny = seq;
    this.options.events?.emit('delivered', 1, again ? 1 : 0);
  }

  /** Sends what this connection may have now: from memory when RabbitMQ holds it, else from history. */
  private async pump(connection: Connection): Promise<void> {
    if (connection.pumping) {
      connection.repump = true;
      return;
    }
    connection.pumping = true;
    try {
      do {
        connection.repump = false;
        while (this.canSend(connection)) {
          const next = connection.cursor + 1;
          const held = this.inflight.get(next);
          if (held) {
            this.sendOne(connection, next, held.fragment, held.redelivered);
            continue;
          }
          const epoch = this.epoch;
          const to = Math.min(this.head, connection.acked + connection.sub.window, next + HISTORY_BATCH - 1);
          let entries;
          try {
            entries = await this.options.store.range(this.user, epoch, next, to);
          } catch (error) {
            this.options.logger.warn({ user: this.user, err: errorMessage(error) }, 'history read failed; retrying');
            setTimeout(() => void this.pump(connection), 1_000).unref();
            return;
          }
          if (epoch !== this.epoch || connection.detached) return;
          if (entries === null) {
            this.epochLost('epoch-lost');
            return;
          }
          if (entries[0]?.seq !== next) {
            // Every seq up to the head was written to history when it was numbered, and history
            // is trimmed only at or below the store's acked mark: RabbitMQ no longer holds it
            // (this node's mark may lag another's). Unless it arrived meanwhile, the connection
            // resumes from a fresh position instead of waiting for a delivery that cannot come.
            if (!this.inflight.has(next)) connection.sub.resync(`history no longer holds seq ${next}`);
            break;
          }
          for (const entry of entries) {
            if (entry.seq !== connection.cursor + 1 || !this.canSend(connection)) break;
            const live = this.inflight.get(entry.seq);
            this.sendOne(connection, entry.seq, live?.fragment ?? entry.fragment, live ? live.redelivered : true);
          }
        }
      } while (connection.repump && !connection.detached);
    } finally {
      connection.pumping = false;
    }
  }

  /** The store lost this user's numbering: every connection is reset and the stream closes. */
  private epochLost(reason: string): void {
    this.epochGone = true;
    this.markWriter.stop();
    if (this.closing) return;
    this.options.events?.emit('epoch-lost');
    this.options.logger.warn({ user: this.user }, 'state store lost the user numbering; resetting connections');
    const connections = [...this.connections.values()];
    void this.close();
    void this.options.store.meta(this.user).then(
      (meta) => {
        for (const connection of connections) connection.sub.reset(meta.epoch, meta.acked, reason);
      },
      () => {
        for (const connection of connections) connection.sub.resync('state store unavailable');
      },
    );
  }

  private async settleAssignments(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.consumer && !this.epochGone && (this.assigning || this.pending.length > 0) && Date.now() < deadline) {
      if (!this.assigning) void this.assignPending(this.generation);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /**
   * Releases the consumer: whatever it received is numbered first (when the store answers), then
   * the channel is closed and its unacked messages return to the queue in order. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      // Number what this consumer already received before letting it go (see assignPending).
      await this.settleAssignments(3_000);
      this.generation += 1;
      if (this.restartTimer) clearTimeout(this.restartTimer);
      if (this.assignRetryTimer) clearTimeout(this.assignRetryTimer);
      this.stopLinger();
      // A consumer still starting is waited for briefly; one that starts later sees the new
      // generation and closes itself (see startConsumer), so a slow broker cannot hold a drain.
      if (this.starting) await settledWithin(this.starting, 2_000);
      // What clients acked goes to the store and to RabbitMQ before the channel closes (else
      // it comes back, and the next stream would start from an older mark).
      await this.markWriter.settle(2_000);
      this.markWriter.stop();
      this.ackBroker(this.acked);
      const consumer = this.consumer;
      this.consumer = undefined;
      this.inflight.clear();
      this.outstanding.clear();
      this.pending = [];
      for (const connection of this.connections.values()) connection.detached = true;
      this.connections.clear();
      await consumer?.close();
      this.options.onIdle?.();
    })();
    return this.closing;
  }
}

function defaultRestartDelay(attempt: number): number {
  const capped = Math.min(5_000, 100 * 2 ** Math.min(attempt, 6));
  return capped / 2 + Math.random() * (capped / 2);
}
