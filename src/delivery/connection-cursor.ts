/**
 * One connection's place in its user's stream, and the pump that sends it what comes next.
 *
 * This module guarantees, for its connection:
 * - seqs are sent in strictly increasing order from the agreed position, each once (a rewind
 *   after a `nack` with requeue sends the rewound seqs again, in order, marked `redelivered`);
 * - at most `window` seqs are sent and not yet acked, and nothing is written while the socket
 *   is over its high-water mark (the connection calls `pump` again when it drained);
 * - a seq is sent from memory when the consumer holds it, else from the store's history; when
 *   history no longer holds the next seq the connection is told to resync, never left waiting.
 */
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import type { HistoryEntry } from '../store/store.js';
import type { Clock, TimerHandle } from './background-clock.js';
import type { SendableMessage } from './inflight-ledger.js';
import { msgFrame } from './message-codec.js';

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

/** Where a cursor's messages come from: the user's stream. */
export interface CursorSource {
  readonly epoch: string;
  /** The highest seq numbered so far. */
  readonly head: number;
  /** The stream is closing: nothing more is sent. */
  readonly closed: boolean;
  /** The message for `seq` if this node has it in memory (its consumer holds it, or another node sent it). */
  held(seq: number): SendableMessage | undefined;
  /** History entries in [from, to]; null when the epoch is gone. */
  history(epoch: string, from: number, to: number): Promise<HistoryEntry[] | null>;
  /** A seq went out (for `redelivered` on later connections, and metrics). */
  sent(seq: number, redelivered: boolean): void;
  /** The store no longer has this numbering. */
  epochLost(): void;
}

export type AckOutcome = 'ok' | 'stale' | 'unknown';

/** Seqs read from history in one store call. */
const HISTORY_BATCH = 100;
const HISTORY_RETRY_MS = 1_000;

export class ConnectionCursor {
  /** Highest seq sent. */
  cursor: number;
  /** Highest seq the client acked (or said it processed). */
  acked: number;
  /** Highest seq ever sent on this connection (for `redelivered` after a rewind). */
  private highestSent: number;
  /** Requeue-nacks per seq since the client last acked past it. */
  private readonly nacks = new Map<number, number>();
  private pumping = false;
  private repump = false;
  private retryTimer: TimerHandle | undefined;
  detached = false;

  constructor(
    readonly sub: Subscriber,
    position: number,
    highestSent: number,
    private readonly source: CursorSource,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    this.cursor = position;
    this.acked = position;
    this.highestSent = highestSent;
  }

  /** Messages sent on this connection and not yet acked. */
  get unacked(): number {
    return this.cursor - this.acked;
  }

  /** Whether an ack of `seq` would move this connection forward (a seq sent and not yet acked). */
  isProgress(seq: number): boolean {
    return seq > this.acked && seq <= this.cursor;
  }

  /** A cumulative ack from the client. */
  ack(seq: number): AckOutcome {
    if (seq > this.cursor) return 'unknown';
    if (seq <= this.acked) return 'stale';
    this.acked = seq;
    for (const nacked of this.nacks.keys()) if (nacked <= seq) this.nacks.delete(nacked);
    return 'ok';
  }

  /** Counts one more requeue-nack of `seq`; returns how many there were. */
  nacked(seq: number): number {
    const attempts = (this.nacks.get(seq) ?? 0) + 1;
    this.nacks.set(seq, attempts);
    return attempts;
  }

  /** Sends everything after `seq` again (the client dropped it). */
  rewindTo(seq: number): void {
    if (seq < this.cursor) this.cursor = Math.max(seq, this.acked);
  }

  snapshot(): { cursor: number; acked: number; window: number; writable: boolean } {
    return { cursor: this.cursor, acked: this.acked, window: this.sub.window, writable: this.sub.writable() };
  }

  detach(): void {
    this.detached = true;
    this.retryTimer?.cancel();
    this.retryTimer = undefined;
  }

  /** Sends what this connection may have now; coalesces calls made while it runs. */
  pump(): void {
    if (this.pumping) {
      this.repump = true;
      return;
    }
    background(this.drive(), (error: unknown) => this.logger.error({ session: this.sub.session, err: errorMessage(error) }, 'pump failed'));
  }

  private canSend(): boolean {
    return (
      !this.detached &&
      !this.source.closed &&
      this.cursor < this.source.head &&
      this.cursor - this.acked < this.sub.window &&
      this.sub.writable()
    );
  }

  private send(seq: number, fragment: string, redelivered: boolean): void {
    const again = redelivered || seq <= this.highestSent;
    this.sub.send(msgFrame(seq, again, fragment));
    this.cursor = seq;
    if (seq > this.highestSent) this.highestSent = seq;
    this.source.sent(seq, again);
  }

  /**
   * Runs until nothing more can be sent. `pumping` is cleared in the same step that sees no
   * `repump` request: a `pump()` that came in a microtask after the last check (a store reply
   * that numbered new messages, say) would otherwise find `pumping` still set and be lost.
   */
  private async drive(): Promise<void> {
    this.pumping = true;
    try {
      do {
        this.repump = false;
        while (this.canSend()) {
          const next = this.cursor + 1;
          const held = this.source.held(next);
          if (held) {
            this.send(next, held.fragment, held.redelivered);
            continue;
          }
          const read = await this.fromHistory(next);
          if (read === 'stop') return;
          if (read === 'gap') break;
        }
      } while (this.repump && !this.detached);
    } finally {
      this.pumping = false;
    }
  }

  /**
   * Sends a run from history starting at `next`: 'sent', or 'gap' when history does not hold it,
   * or 'stop' when the pump must stop (a retry is scheduled, the epoch is gone, or it detached).
   */
  private async fromHistory(next: number): Promise<'sent' | 'gap' | 'stop'> {
    const epoch = this.source.epoch;
    const to = Math.min(this.source.head, this.acked + this.sub.window, next + HISTORY_BATCH - 1);
    let entries: HistoryEntry[] | null;
    try {
      entries = await this.source.history(epoch, next, to);
    } catch (error) {
      this.logger.warn({ session: this.sub.session, err: errorMessage(error) }, 'history read failed; retrying');
      this.retryTimer ??= this.clock.setTimeout(() => {
        this.retryTimer = undefined;
        this.pump();
      }, HISTORY_RETRY_MS);
      return 'stop';
    }
    if (epoch !== this.source.epoch || this.detached) return 'stop';
    if (entries === null) {
      this.source.epochLost();
      return 'stop';
    }
    if (entries[0]?.seq !== next) {
      // Every seq up to the head was written to history when it was numbered, and history is
      // trimmed only at or below the store's acked mark: RabbitMQ no longer holds it (this
      // node's mark may lag another's). Unless it arrived meanwhile, the connection resumes from
      // a fresh position instead of waiting for a delivery that cannot come.
      if (!this.source.held(next)) this.sub.resync(`history no longer holds seq ${next}`);
      return 'gap';
    }
    for (const entry of entries) {
      if (entry.seq !== this.cursor + 1 || !this.canSend()) break;
      const live = this.source.held(entry.seq);
      this.send(entry.seq, live?.fragment ?? entry.fragment, live ? live.redelivered : true);
    }
    return 'sent';
  }
}
