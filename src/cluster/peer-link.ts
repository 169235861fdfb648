/**
 * One user's stream on this node, linked over the node bus to the same user's streams on other
 * nodes (its peers). The node whose consumer RabbitMQ made active (single active consumer)
 * numbers the user's messages; every other node's connections get them from here.
 *
 * This module guarantees, while the bus is up:
 * - peers find each other: a `hello` goes out when the link opens, whenever the bus comes back
 *   and when a peer fell silent for `PEER_EXPIRY_BEATS` heartbeats (it is forgotten unless it
 *   answers), and every stream that hears one answers with its `head`;
 * - while any peer is known: what this node numbers is published in numbering order; a local
 *   cumulative ack is forwarded (one message per turn of the event loop for a burst); a
 *   dead-letter request is forwarded once the store holds it; and a `head` heartbeat (head and
 *   acked mark) goes out every `heartbeatMs`;
 * - a lost notification is noticed by the next heartbeat of the peer that sent it (a head above
 *   this node's, or a run that starts past it), at worst `heartbeatMs` plus a bus round trip
 *   later; the stream then reads the gap from the store's history;
 * - numbered messages from peers are kept (above the acked mark, at most `KEPT_MAX`) so that
 *   connections here send them without a store read.
 * While the bus is down nothing is published: the store is read every `heartbeatMs` for the head
 * instead, so connections here still get what was numbered (from history), a heartbeat later.
 * Nothing here acks RabbitMQ: the stream decides that (see UserStream.peerAcked).
 */
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import type { Clock, TimerHandle } from '../delivery/background-clock.js';
import type { BusMessage, NumberedEntry } from './bus-message.js';
import type { NodeBus, Subscription } from './node-bus.js';

/** A message as a connection sends it. */
export interface SendableMessage {
  fragment: string;
  redelivered: boolean;
}

/** What the link reads from and tells its user's stream. */
export interface LinkedStream {
  /** Empty until the stream read its numbering from the store: nothing is published or taken before. */
  readonly epoch: string;
  readonly head: number;
  readonly ackedMark: number;
  /** The acked mark peers may act on (never past a dead-letter request the store does not hold yet). */
  readonly forwardableAck: number;
  /** Seqs up to `seq` are numbered (by a peer): connections may send them. */
  peerHead(seq: number): void;
  /** A connection on a peer acked every seq up to `seq`. */
  peerAcked(seq: number): void;
  /** A client on a peer asked to dead-letter `seq` (the store holds the request). */
  peerDeadLetter(seq: number, reason: string): void;
  /** A peer speaks of another epoch: the stream compares its own with the store's. */
  checkEpoch(): void;
  /** The bus is down: the stream reads its numbering from the store (and raises `head`). */
  pollStore(): Promise<void>;
}

export interface PeerLinkOptions {
  user: string;
  bus: NodeBus;
  stream: LinkedStream;
  heartbeatMs: number;
  clock: Clock;
  logger: Logger;
  events?: RelayEvents;
}

/** A peer not heard from for this many heartbeats is forgotten. */
export const PEER_EXPIRY_BEATS = 3;
/** Numbered messages of peers kept for connections here; older ones are read from history. */
const KEPT_MAX = 10_000;

export class PeerLink {
  private readonly peers = new Map<string, number>();
  private readonly kept = new Map<number, SendableMessage>();
  private subscription: Subscription | undefined;
  private beat: TimerHandle | undefined;
  private stopWatch: (() => void) | undefined;
  private closed = false;
  /** Highest acked mark to forward, and the highest forwarded. */
  private ackToSend = 0;
  private ackSent = 0;
  private ackScheduled = false;
  private answerScheduled = false;

  constructor(private readonly options: PeerLinkOptions) {}

  /** Whether another node of this user was heard from recently. */
  get hasPeers(): boolean {
    return this.peers.size > 0;
  }

  /** Peers heard from recently (diagnostics). */
  get peerIds(): string[] {
    return [...this.peers.keys()];
  }

  /**
   * Subscribes to the user's channel. Resolves once the subscription is in place, or at once while
   * the bus is down (it subscribes when the bus comes back); rejects if the bus refused it.
   */
  async open(): Promise<void> {
    const { bus, user } = this.options;
    const subscription = await bus.subscribe(user, (message) => this.receive(message));
    if (this.closed) {
      await subscription.close();
      return;
    }
    this.subscription = subscription;
    this.stopWatch = bus.onState((state) => {
      if (state === 'connected') this.hello();
      this.scheduleBeat();
    });
    this.scheduleBeat();
  }

  /** The stream knows its numbering: peers are greeted (they answer with their heads). */
  hello(): void {
    const { epoch, head, forwardableAck } = this.options.stream;
    if (this.closed || !epoch) return;
    this.publish({ kind: 'head', epoch, seq: head, acked: forwardableAck, hello: true });
  }

  /** The message a peer numbered for `seq`, if it is kept here. */
  held(seq: number): SendableMessage | undefined {
    return this.kept.get(seq);
  }

  /** This node numbered these messages (in order). */
  numbered(entries: NumberedEntry[]): void {
    const { epoch } = this.options.stream;
    if (this.peers.size === 0 || entries.length === 0 || !epoch) return;
    this.publish({ kind: 'numbered', epoch, entries });
  }

  /** The acked mark may be forwarded up to `seq` (local acks, below any unstored dead-letter request). */
  acked(seq: number): void {
    if (seq <= this.ackToSend) return;
    this.ackToSend = seq;
    if (this.ackScheduled || this.peers.size === 0) return;
    this.ackScheduled = true;
    setImmediate(() => {
      this.ackScheduled = false;
      const { epoch } = this.options.stream;
      if (this.closed || this.ackToSend <= this.ackSent || !epoch) return;
      this.ackSent = this.ackToSend;
      this.options.events?.emit('cluster-ack-forwarded', 'sent');
      this.publish({ kind: 'acked', epoch, seq: this.ackSent });
    });
  }

  /** A dead-letter request of a client here is in the store. */
  deadLetter(seq: number, reason: string): void {
    const { epoch } = this.options.stream;
    if (this.peers.size === 0 || !epoch) return;
    this.publish({ kind: 'dead-letter', epoch, seq, reason });
  }

  /** The acked mark moved: what peers numbered at or below it is no longer kept. */
  prune(acked: number): void {
    // Not in seq order after a hand-over (runs come again, redelivered); the map is small: at
    // most what the owner holds unacked (its prefetch) plus what arrived since the last ack.
    for (const seq of this.kept.keys()) if (seq <= acked) this.kept.delete(seq);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.beat?.cancel();
    this.stopWatch?.();
    this.kept.clear();
    await this.subscription?.close();
  }

  private receive(message: BusMessage): void {
    if (this.closed) return;
    this.peers.set(message.from, this.options.clock.now());
    this.scheduleBeat();
    const { stream } = this.options;
    if (!stream.epoch) return;
    if (message.epoch !== stream.epoch) {
      stream.checkEpoch();
      return;
    }
    switch (message.kind) {
      case 'numbered':
        return this.takeNumbered(message.entries);
      case 'acked':
        this.options.events?.emit('cluster-ack-forwarded', 'received');
        return stream.peerAcked(message.seq);
      case 'dead-letter':
        return stream.peerDeadLetter(message.seq, message.reason);
      case 'head':
        if (message.hello) this.answer();
        if (message.seq > stream.head) this.healed(message.seq);
        if (message.acked !== undefined) stream.peerAcked(message.acked);
        return;
    }
  }

  private takeNumbered(entries: NumberedEntry[]): void {
    const { stream } = this.options;
    const first = entries[0];
    const last = entries[entries.length - 1];
    if (!first || !last) return;
    for (const { seq, fragment, redelivered } of entries) {
      if (seq > stream.ackedMark) this.kept.set(seq, { fragment, redelivered });
    }
    while (this.kept.size > KEPT_MAX) {
      const oldest = this.kept.keys().next().value;
      if (oldest === undefined) break;
      this.kept.delete(oldest);
    }
    // A run that starts past the head follows one this node did not get: history has it.
    if (first.seq > stream.head + 1) this.healed(last.seq);
    else stream.peerHead(last.seq);
  }

  private healed(seq: number): void {
    this.options.events?.emit('cluster-healed');
    this.options.logger.debug({ user: this.options.user, head: this.options.stream.head, seq }, 'behind a peer; reading history');
    this.options.stream.peerHead(seq);
  }

  /** Answers a `hello` with this stream's head, once per turn however many arrived. */
  private answer(): void {
    if (this.answerScheduled) return;
    this.answerScheduled = true;
    setImmediate(() => {
      this.answerScheduled = false;
      this.heartbeat();
    });
  }

  private heartbeat(): void {
    const { epoch, head, forwardableAck } = this.options.stream;
    if (this.closed || !epoch) return;
    this.publish({ kind: 'head', epoch, seq: head, acked: forwardableAck });
  }

  /**
   * Keeps the heartbeat timer running while there is work for it: a peer to tell, or a bus that is
   * down (the store is polled). A stream whose user has no other node has no timer at all.
   */
  private scheduleBeat(): void {
    if (this.closed || this.beat) return;
    if (this.peers.size === 0 && this.options.bus.state === 'connected') return;
    this.beat = this.options.clock.setTimeout(() => {
      this.beat = undefined;
      this.tick();
      this.scheduleBeat();
    }, this.options.heartbeatMs);
  }

  private tick(): void {
    const { bus, stream, clock, heartbeatMs } = this.options;
    if (bus.state !== 'connected') {
      background(stream.pollStore(), (error: unknown) =>
        this.options.logger.debug({ user: this.options.user, err: errorMessage(error) }, 'store poll failed'),
      );
      return;
    }
    const expired = clock.now() - PEER_EXPIRY_BEATS * heartbeatMs;
    let forgot = false;
    for (const [peer, seen] of this.peers) {
      if (seen >= expired) continue;
      this.peers.delete(peer);
      forgot = true;
    }
    // A peer that went silent has closed its stream, or its heartbeats were lost while the bus
    // looked up: a hello finds out which (a live peer answers), so that neither side stops
    // publishing to the other for good.
    if (forgot) this.hello();
    else if (this.peers.size > 0) this.heartbeat();
  }

  private publish(message: Parameters<NodeBus['publish']>[1]): void {
    background(this.options.bus.publish(this.options.user, message), (error: unknown) =>
      // Best effort by design: a lost message is found by a later heartbeat.
      this.options.logger.debug({ user: this.options.user, kind: message.kind, err: errorMessage(error) }, 'node bus publish failed'),
    );
  }
}
