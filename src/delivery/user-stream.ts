/**
 * One user's delivery on this node: one RabbitMQ consumer, any number of connections. It
 * coordinates small parts, each the home of one guarantee:
 * - `BrokerSide`: the consumer and what it delivers, numbered and settled with RabbitMQ; within
 *   it `ConsumerSupervisor` (one consumer, restarted with backoff), `NumberingIntake` (numbered
 *   in queue order), `InFlightLedger` (the exact broker ack) and `DeadLetterIntents`;
 * - `ConnectionCursor`: each connection's position, window and history pump;
 * - `resolvePosition`: where a `hello` starts;
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
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import { settledWithin } from '../settle.js';
import type { SeqStore, StreamMeta } from '../store/store.js';
import { AckedMarkWriter } from './acked-mark-writer.js';
import { backgroundClock, type Clock, type TimerHandle } from './background-clock.js';
import { BrokerSide, type StreamNumbering } from './broker-side.js';
import { ConnectionCursor, type AckOutcome, type CursorSource, type Subscriber } from './connection-cursor.js';
import type { SendableMessage } from './inflight-ledger.js';
import { PeerLink, type LinkedStream } from '../cluster/peer-link.js';
import { lostWrites, resolvePosition, type AttachResult, type ResumeRequest } from './resume-position.js';
import { StreamClosedError, type UserStreamOptions } from './user-stream-options.js';

export type { AckOutcome, AttachResult, ResumeRequest, Subscriber, UserStreamOptions };
export { StreamClosedError };

/** How long a closing stream waits for the store to number what its consumer received. */
const NUMBERING_WAIT_MS = 3_000;
/** How long a closing stream waits for the store to take its acked mark. */
const MARK_WAIT_MS = 2_000;
/** How soon a failed question to the store about dead-letter requests is asked again. */
const BROKER_CHECK_RETRY_MS = 1_000;
/** See UserStreamOptions.clusterHeartbeatMs. */
export const DEFAULT_CLUSTER_HEARTBEAT_MS = 1_000;

export class UserStream implements CursorSource, StreamNumbering, LinkedStream {
  readonly user: string;
  epoch = '';
  head = 0;
  private acked = 0;
  private loaded = false;
  private readonly connections = new Map<Subscriber, ConnectionCursor>();
  private readonly broker: BrokerSide;
  private readonly markWriter: AckedMarkWriter;
  private readonly clock: Clock;
  private lingerTimer: TimerHandle | undefined;
  private epochGone = false;
  /** Highest seq sent to any connection of this stream. */
  private highestSentAny = 0;
  private closePromise: Promise<void> | undefined;
  private degraded: string | undefined;
  /** The link to this user's streams on other nodes (only with a node bus). */
  private link: PeerLink | undefined;
  private linkOpening: Promise<void> | undefined;
  /** What RabbitMQ may be acked up to, the mark waiting for the store's answer, and whether it is asked. */
  private brokerMark = 0;
  private brokerTarget = 0;
  /** Up to where raising the broker mark asks the store first (see raiseBrokerMark). */
  private brokerCheckUpTo = 0;
  private brokerChecking = false;
  private epochChecking = false;

  constructor(private readonly options: UserStreamOptions) {
    this.user = options.user;
    this.clock = options.clock ?? backgroundClock;
    const { store, logger } = options;
    this.broker = new BrokerSide({
      user: this.user,
      store,
      consumers: options.consumers,
      prefetch: options.prefetch,
      maxMessageBytes: options.maxMessageBytes,
      replaySeal: options.replaySeal,
      receipts: options.receipts,
      logger,
      clock: this.clock,
      events: options.events,
      restartDelayMs: options.restartDelayMs,
      numbering: this,
      onNumbered: (held) => {
        this.link?.numbered(held);
        for (const cursor of this.connections.values()) cursor.pump();
      },
      onEpochGone: () => this.epochLost(),
      onLost: (reason) => this.consumerLost(reason),
      onHealthy: () => this.setStatus(undefined),
      onStoreDown: () => this.setStatus('state store unavailable'),
      onRequestStored: () => {
        this.markWriter.moved(this.acked);
        this.forwardAck();
      },
      onIntentStored: (seq, reason) => this.link?.deadLetter(seq, reason),
    });
    this.markWriter = new AckedMarkWriter({
      // The epoch is set when the stream loads, before any connection can ack.
      write: (seq) => store.ack(this.user, this.epoch, seq),
      intervalMs: options.storeAckIntervalMs ?? 0,
      clock: this.clock,
      // Never past a dead-letter request the store does not hold yet: a stream that starts from
      // the store's mark would take that message for processed and ack it.
      ceiling: () => this.broker.intents.markCeiling(),
      onEpochGone: () => this.epochLost(),
      onError: (error) => logger.warn({ user: this.user, err: errorMessage(error) }, 'could not record ack in the store; retrying'),
    });
  }

  /** The highest seq some client acked (the broker side acks RabbitMQ up to it). */
  get ackedMark(): number {
    return this.acked;
  }

  /** Set once `close()` started: nothing more is sent, and attaches go to the next stream. */
  get closed(): boolean {
    return this.closePromise !== undefined;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Seqs delivered by RabbitMQ and not yet acked to it. */
  get inflightCount(): number {
    return this.broker.inflightCount;
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
    // Subscribed before the numbering is read: whatever another node numbers after that read
    // reaches this stream (or its next heartbeat does).
    await this.openLink();
    const { meta, warning } = await this.loadMeta(resume);
    const result = resolvePosition(resume, { epoch: this.epoch, acked: this.acked, historyStart: meta.start });
    if (warning) result.warning = warning;
    // Anything another connection of this user was sent may have reached this client too (a
    // reconnect can arrive before the old connection is gone): it is marked redelivered.
    const seen = Math.max(this.highestSentAny, resume && !result.reset ? Math.max(resume.lastSeq, result.lastSeq) : result.lastSeq);
    const cursor = new ConnectionCursor(sub, result.lastSeq, seen, this, this.clock, this.options.logger);
    this.connections.set(sub, cursor);
    this.stopLinger();
    if (result.lastSeq > this.acked) this.advanceAcked(result.lastSeq);
    try {
      await this.broker.start();
    } catch (error) {
      // Closed meanwhile (its supervisor refuses to start): attach to the next stream. Read before
      // this attach closes the stream itself, which must report the consumer's own error.
      const closedMeanwhile = this.closed;
      cursor.detach();
      this.connections.delete(sub);
      if (this.connections.size === 0) this.closeInBackground();
      if (closedMeanwhile) throw new StreamClosedError();
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
    const { seen, warning } = lostWrites(meta, resume, this.loaded ? { epoch: this.epoch, head: this.head } : undefined);
    if (seen !== undefined) {
      this.options.logger.warn({ user: this.user, storeSeq: meta.seq, seen }, 'state store is behind what was seen; ending its epoch');
      await store.discard(this.user, meta.epoch);
      if (this.loaded) {
        this.epochLost();
        throw new StreamClosedError(warning);
      }
      meta = await store.meta(this.user);
      if (this.closed) throw new StreamClosedError();
    }
    if (this.loaded && meta.epoch !== this.epoch) {
      this.epochLost();
      throw new StreamClosedError();
    }
    if (!this.loaded) {
      this.epoch = meta.epoch;
      this.head = meta.seq;
      this.acked = meta.acked;
      // Nothing is held yet, and what the consumer numbers at or below it the store answers for.
      this.brokerMark = meta.acked;
      this.brokerTarget = meta.acked;
      this.markWriter.known(meta.acked);
      this.loaded = true;
      // Requests the user's previous stream here could not record: binding before any position
      // (the client's, below) can take their messages for processed.
      for (const { seq, reason } of this.options.handover?.take(this.user, this.epoch) ?? []) this.broker.deadLetter(seq, reason);
      this.link?.hello();
    } else {
      // Numbered elsewhere and not heard of (a lost notification): every connection may go on.
      if (meta.seq > this.head) this.peerHead(meta.seq);
      if (meta.acked > this.acked) {
        // A connection on another node acked further: finish those messages here too.
        this.markWriter.known(meta.acked);
        this.advanceAcked(meta.acked);
      }
    }
    return { meta, warning };
  }

  private async openLink(): Promise<void> {
    const { bus } = this.options;
    if (!bus) return;
    this.linkOpening ??= (async () => {
      const link = new PeerLink({
        user: this.user,
        bus,
        stream: this,
        heartbeatMs: this.options.clusterHeartbeatMs ?? DEFAULT_CLUSTER_HEARTBEAT_MS,
        clock: this.clock,
        logger: this.options.logger,
        ...(this.options.events ? { events: this.options.events } : {}),
      });
      try {
        await link.open();
      } catch (error) {
        // The bus is up but refused the subscription: the next attach tries again.
        this.linkOpening = undefined;
        await link.close();
        throw error;
      }
      this.link = link;
      if (this.closed) await link.close();
    })();
    await this.linkOpening;
    if (this.closed) throw new StreamClosedError();
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
    if (lingerMs <= 0 || !this.broker.hasConsumer || this.closed) {
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
    if (seq > this.acked) this.advanceAcked(seq, { clientAck: true });
    cursor.pump();
    return 'ok';
  }

  /**
   * A client could not process one seq. `requeue`: the connection is rewound and the seq sent
   * again (then everything after it, in order), `nackLimit` times; past that, or without
   * `requeue`, the message is dead-lettered and the client goes on after it. A seq another
   * connection already acked counts as processed: nothing is dead-lettered ('stale'; past the
   * nack limit 'processed', which the client must be told, as it waits for the seq again).
   */
  nack(sub: Subscriber, seq: number, requeue: boolean): AckOutcome | 'dead-lettered' | 'processed' {
    const cursor = this.connections.get(sub);
    if (!cursor?.isProgress(seq)) return 'unknown';
    this.options.events?.emit('nacked', requeue);
    if (requeue && cursor.nacked(seq) <= this.options.nackLimit) {
      cursor.rewindTo(seq - 1);
      cursor.pump();
      return 'ok';
    }
    const processed = seq <= this.acked;
    if (!processed) this.broker.deadLetter(seq, requeue ? 'nack-limit' : 'client-nack');
    if (requeue) {
      // The client dropped what followed the seq it asked to see again: send that again.
      cursor.rewindTo(seq);
      cursor.pump();
    }
    if (processed) return requeue ? 'processed' : 'stale';
    return 'dead-lettered';
  }

  /** Called by the connection when its send buffer drained. */
  resume(sub: Subscriber): void {
    this.connections.get(sub)?.pump();
  }

  /** Numbers and restarts now instead of at the next retry (a dependency came back). */
  retryNow(): void {
    this.broker.retryNow(this.connections.size > 0);
  }

  /** A snapshot for diagnostics (logs, operator tools, tests). */
  snapshot(): Record<string, unknown> {
    return {
      user: this.user,
      epoch: this.epoch,
      head: this.head,
      acked: this.acked,
      lingering: this.lingering,
      degraded: this.degraded,
      closed: this.closed,
      peers: this.link?.peerIds ?? [],
      ...this.broker.snapshot(),
      connections: [...this.connections.values()].map((cursor) => cursor.snapshot()),
    };
  }

  // CursorSource: what connections read.

  held(seq: number): SendableMessage | undefined {
    return this.broker.held(seq) ?? this.link?.held(seq);
  }

  history(epoch: string, from: number, to: number): ReturnType<SeqStore['range']> {
    return this.options.store.range(this.user, epoch, from, to);
  }

  sent(seq: number, redelivered: boolean): void {
    if (seq > this.highestSentAny) this.highestSentAny = seq;
    this.options.events?.emit('delivered', 1, redelivered ? 1 : 0);
    if (this.link && !this.broker.held(seq) && this.link.held(seq)) this.options.events?.emit('cluster-delivered', 1);
  }

  // LinkedStream: what the user's streams on other nodes tell this one.

  peerHead(seq: number): void {
    if (this.closed || seq <= this.head) return;
    this.head = seq;
    for (const cursor of this.connections.values()) cursor.pump();
  }

  /** A connection on another node acked up to `seq`: as a local ack, without forwarding it. */
  peerAcked(seq: number): void {
    if (this.closed || seq <= this.acked) return;
    this.advanceAcked(seq, { forward: false });
  }

  /** The highest seq RabbitMQ may be acked up to (see raiseBrokerMark). */
  get brokerAckMark(): number {
    return this.brokerMark;
  }

  /**
   * Lets RabbitMQ be acked up to `target`. A client on another node may have asked to
   * dead-letter one of those messages and the bus lost the request (it reconnected, or this node
   * never heard of that one), so the store, which every request reaches first, is asked before:
   * those are rejected, not acked. It is asked while this stream has peers, and for a mark that
   * does not come from an ack of one of its own connections (`unverified`: another node's ack, the
   * store's mark, a resume position) on any node of a cluster. Targets that come while it answers
   * wait and are merged into one question.
   */
  private raiseBrokerMark(target: number, unverified = false): void {
    if (target > this.brokerTarget) this.brokerTarget = target;
    if (unverified && this.options.bus && target > this.brokerCheckUpTo) this.brokerCheckUpTo = target;
    if (this.brokerChecking || this.closed || this.brokerTarget <= this.brokerMark) return;
    const next = this.brokerTarget;
    const checkTo = this.link?.hasPeers ? next : Math.min(next, this.brokerCheckUpTo);
    const held = checkTo > this.brokerMark ? this.broker.heldBetween(this.brokerMark, checkTo) : [];
    if (held.length === 0) {
      this.brokerMark = next;
      this.broker.scheduleAck();
      return;
    }
    this.brokerChecking = true;
    this.options.store.deadLetterRequests(this.user, this.epoch, held).then(
      (requested) => {
        this.brokerChecking = false;
        if (this.closed) return;
        if (requested === null) return this.epochLost();
        for (const requestedSeq of requested) this.broker.peerDeadLetter(requestedSeq, 'client-nack');
        if (next > this.brokerMark) this.brokerMark = next;
        this.broker.scheduleAck();
        this.raiseBrokerMark(this.brokerTarget);
      },
      (error: unknown) => {
        // The messages stay unacked meanwhile (the prefetch may be full): asked again shortly.
        this.brokerChecking = false;
        this.options.logger.warn({ user: this.user, err: errorMessage(error) }, 'could not check dead-letter requests; ack waits');
        this.clock.setTimeout(() => this.raiseBrokerMark(this.brokerTarget), BROKER_CHECK_RETRY_MS);
      },
    );
  }

  peerDeadLetter(seq: number, reason: string): void {
    if (!this.closed) this.broker.peerDeadLetter(seq, reason);
  }

  checkEpoch(): void {
    if (this.epochChecking || this.closed) return;
    this.epochChecking = true;
    background(
      this.options.store.meta(this.user).then((meta) => {
        this.epochChecking = false;
        if (meta.epoch !== this.epoch) this.epochLost();
      }),
      (error: unknown) => {
        this.epochChecking = false;
        this.options.logger.debug({ user: this.user, err: errorMessage(error) }, 'epoch check failed');
      },
    );
  }

  async pollStore(): Promise<void> {
    if (this.closed || this.connections.size === 0) return;
    const meta = await this.options.store.meta(this.user);
    if (this.closed) return;
    if (meta.epoch !== this.epoch) return this.epochLost();
    if (meta.seq > this.head) {
      this.options.events?.emit('cluster-healed');
      this.peerHead(meta.seq);
    }
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

  private consumerLost(reason: string): void {
    if (this.closed) return;
    if (this.connections.size === 0) {
      this.stopLinger();
      this.closeInBackground();
      return;
    }
    this.options.logger.warn({ user: this.user, reason }, 'consumer lost; restarting');
    this.setStatus(reason);
    this.broker.restartLater();
  }

  /**
   * Moves the acked mark. RabbitMQ learns of it once per turn of the event loop (acks of one
   * burst arrive together: one broker ack), the store once per storeAckIntervalMs and store round
   * trip. Until RabbitMQ is acked the messages stay in flight; a crash in between redelivers them
   * with the same seqs, and a resuming client is past them.
   */
  private advanceAcked(seq: number, { forward = true, clientAck = false } = {}): void {
    this.acked = seq;
    this.raiseBrokerMark(seq, !clientAck);
    this.markWriter.moved(seq);
    this.link?.prune(seq);
    if (forward) this.forwardAck();
  }

  /**
   * The owner learns the acked mark at once (it acks RabbitMQ), never past a dead-letter request
   * the store does not hold yet. The owner itself settles its acks locally and tells the others
   * only with its heartbeats: one pub/sub message per ack fewer, for every node.
   */
  private forwardAck(): void {
    if (this.broker.isOwner) return;
    this.link?.acked(this.forwardableAck);
  }

  /** The acked mark other nodes may act on: below any dead-letter request the store does not hold yet. */
  get forwardableAck(): number {
    return Math.min(this.acked, this.broker.intents.markCeiling());
  }

  /** Tells every connection that delivery paused (the first reason counts) or goes on. */
  private setStatus(degraded: string | undefined): void {
    if (degraded ? this.degraded : !this.degraded) return;
    this.degraded = degraded;
    for (const sub of this.connections.keys()) sub.status(degraded ? 'degraded' : 'ok', degraded);
  }

  /**
   * Gives the consumer up but keeps the connections (a drain): RabbitMQ makes another node's
   * waiting consumer the active one, and the connections here go on receiving what that node
   * numbers until they are closed. As in `close`, what the consumer received is numbered first and
   * the acked mark is written and acked before the channel closes. Attaches fail from now on.
   */
  async releaseConsumer(): Promise<void> {
    if (this.closed) return;
    await this.broker.stop(this.epochGone ? 0 : NUMBERING_WAIT_MS);
    await settledWithin(this.markWriter.settle(), MARK_WAIT_MS);
    this.broker.ackUpToMark();
    await this.broker.close();
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
      this.stopLinger();
      // Number what the consumer already received before letting it go (see NumberingIntake).
      await this.broker.stop(this.epochGone ? 0 : NUMBERING_WAIT_MS);
      // What clients acked goes to the store and to RabbitMQ before the channel closes (else
      // it comes back, and the next stream would start from an older mark).
      await settledWithin(this.markWriter.settle(), MARK_WAIT_MS);
      this.markWriter.stop();
      this.broker.ackUpToMark();
      for (const cursor of this.connections.values()) cursor.detach();
      this.connections.clear();
      await this.broker.close();
      if (!this.epochGone) this.options.handover?.put(this.user, this.epoch, this.broker.intents.unrecorded());
      await this.link?.close();
      this.options.onIdle?.();
    })();
    return this.closePromise;
  }
}
