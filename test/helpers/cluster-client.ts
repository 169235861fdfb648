/**
 * One logical client of a user for the cluster tests, independent of the SDK: an identity that
 * keeps its position (epoch, lastSeq) across all its connections, each made to the node
 * `pickUrl` names at that moment. It records what the checker (cluster-check.ts) needs:
 * - every `msg` received, with the connection it came on, and those it processed (the next seq
 *   only, as PROTOCOL 1.1 tells clients to);
 * - order violations seen on one connection: a seq that is not the previous one plus one, or a
 *   `welcome` that does not continue from the position it resumed;
 * - `reset` frames.
 * It acks what it processed (cumulative, coalesced: after `ackEvery` messages or `ackDelayMs`),
 * resumes after every close, and never heals a stall on its own: a connection that receives
 * nothing stays open, so the test sees it. A gap on a connection is a lost frame: it reconnects.
 */
import WebSocket from 'ws';
import { parseRetryAfterMs } from '../../src/protocol/close-codes.js';
import { SUBPROTOCOL, decodeServerFrame, type MsgFrame, type WelcomeFrame } from '../../src/protocol/frames.js';
import { rawDataToString } from '../../src/server/raw-data.js';

/** One `msg` frame as an identity received it. */
export interface ReceivedMsg {
  readonly epoch: string;
  readonly seq: number;
  readonly id: string;
  readonly redelivered: boolean;
  /** Which of the identity's connections (1, 2, ...) it came on. */
  readonly connection: number;
}

/** What the checker reads of one identity. */
export interface IdentityLog {
  readonly identity: string;
  readonly user: string;
  readonly received: readonly ReceivedMsg[];
  readonly processed: readonly ReceivedMsg[];
  readonly orderViolations: readonly string[];
  readonly resets: number;
}

export interface ClusterClientOptions {
  identity: string;
  user: string;
  token: () => string;
  /** The URL to connect to now; undefined while no node is live (it asks again shortly). */
  pickUrl: () => string | undefined;
  /** Ack once this many processed messages are unacked; default 5. */
  ackEvery?: number;
  /** Ack what is processed at most this long after processing it; default 50 ms. */
  ackDelayMs?: number;
  window?: number;
  random?: () => number;
  /** Called with every message as it is processed (the failover tests time deliveries with it). */
  onProcessed?: (msg: ReceivedMsg) => void;
}

const RETRY_AFTER_CAP_MS = 2_000;

export class ClusterClient implements IdentityLog {
  readonly identity: string;
  readonly user: string;
  readonly received: ReceivedMsg[] = [];
  readonly processed: ReceivedMsg[] = [];
  readonly processedIds = new Set<string>();
  readonly orderViolations: string[] = [];
  readonly closeCodes: number[] = [];
  resets = 0;
  /** Connections opened (attempts included). */
  connections = 0;
  welcomes = 0;
  epoch: string | undefined;
  lastSeq = 0;
  ackedSeq = 0;
  private ws: WebSocket | undefined;
  /** The last seq on the current connection: its welcome's lastSeq, then each msg's; undefined before the welcome. */
  private connectionLast: number | undefined;
  private connection = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: ClusterClientOptions) {
    this.identity = options.identity;
    this.user = options.user;
  }

  /** Connected and welcomed: messages can arrive. */
  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN && this.connectionLast !== undefined;
  }

  start(): void {
    this.connect();
  }

  /** Cuts the current connection without a close frame (a network drop); it reconnects and resumes. */
  drop(): void {
    if (this.ws) this.cut(this.ws);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.ackTimer);
    clearTimeout(this.retryTimer);
    const ws = this.ws;
    this.ws = undefined;
    ws?.terminate();
  }

  private random(): number {
    return (this.options.random ?? Math.random)();
  }

  private connect(): void {
    this.retryTimer = undefined;
    if (this.stopped) return;
    const url = this.options.pickUrl();
    if (url === undefined) {
      this.retryLater(200);
      return;
    }
    this.connections += 1;
    const connection = ++this.connection;
    const ws = new WebSocket(url, [SUBPROTOCOL]);
    this.ws = ws;
    this.connectionLast = undefined;
    ws.on('open', () => {
      const hello: Record<string, unknown> = { type: 'hello', token: this.options.token() };
      if (this.options.window !== undefined) hello.window = this.options.window;
      if (this.epoch !== undefined) hello.resume = { epoch: this.epoch, lastSeq: this.lastSeq };
      ws.send(JSON.stringify(hello));
    });
    ws.on('message', (raw) => {
      if (ws !== this.ws) return;
      const decoded = decodeServerFrame(rawDataToString(raw));
      if (!decoded.ok) {
        this.orderViolations.push(`invalid frame: ${decoded.reason}`);
        return;
      }
      const frame = decoded.frame;
      switch (frame.type) {
        case 'welcome':
          this.onWelcome(frame);
          break;
        case 'reset':
          this.resets += 1;
          this.epoch = frame.epoch;
          this.lastSeq = frame.lastSeq;
          this.ackedSeq = frame.lastSeq;
          break;
        case 'msg':
          this.onMsg(ws, frame, connection);
          break;
        // None of these moves a position: `status` is a hint, `error` reports a frame the relay
        // ignored, `pong` answers a ping (this client sends none).
        case 'status':
        case 'error':
        case 'pong':
          break;
      }
    });
    ws.on('close', (code, reason) => {
      this.closeCodes.push(code);
      if (ws !== this.ws) return;
      this.ws = undefined;
      this.connectionLast = undefined;
      const hinted = code === 1013 ? parseRetryAfterMs(reason.toString()) : undefined;
      this.retryLater(hinted === undefined ? 30 + this.random() * 120 : Math.min(hinted, RETRY_AFTER_CAP_MS));
    });
    ws.on('error', () => undefined);
  }

  /** Ends `ws` at once, ignoring whatever it still delivers, and connects again shortly. */
  private cut(ws: WebSocket): void {
    if (ws !== this.ws) return;
    this.ws = undefined;
    this.connectionLast = undefined;
    ws.terminate();
    this.retryLater(30 + this.random() * 120);
  }

  private retryLater(ms: number): void {
    if (this.stopped || this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => this.connect(), ms);
  }

  private onWelcome(frame: WelcomeFrame): void {
    this.welcomes += 1;
    if (frame.epoch === this.epoch && frame.recovered && frame.lastSeq !== this.lastSeq) {
      this.orderViolations.push(`${this.identity}: welcome lastSeq ${frame.lastSeq} after resuming from ${this.lastSeq}`);
    }
    this.epoch = frame.epoch;
    this.lastSeq = frame.lastSeq;
    // A resume position counts as an ack of every seq up to it (PROTOCOL section 7).
    this.ackedSeq = frame.lastSeq;
    this.connectionLast = frame.lastSeq;
  }

  private onMsg(ws: WebSocket, frame: MsgFrame, connection: number): void {
    const epoch = this.epoch ?? '';
    const expected = (this.connectionLast ?? 0) + 1;
    if (this.connectionLast === undefined || frame.seq !== expected) {
      this.orderViolations.push(`${this.identity} connection ${connection}: seq ${frame.seq} where ${expected} was next`);
    }
    if (frame.seq > expected) {
      // A seq is missing on this connection: treat it as a lost frame and resume (PROTOCOL 1.1).
      // The frame is not recorded as received: when it comes again after the resume, possibly
      // unflagged from another node, that is a consequence of this violation, not a second one.
      this.cut(ws);
      return;
    }
    this.received.push({ epoch, seq: frame.seq, id: frame.id, redelivered: frame.redelivered, connection });
    this.connectionLast = Math.max(this.connectionLast ?? 0, frame.seq);
    if (frame.seq !== this.lastSeq + 1) return;
    const processed = { epoch, seq: frame.seq, id: frame.id, redelivered: frame.redelivered, connection };
    this.processed.push(processed);
    this.processedIds.add(frame.id);
    this.options.onProcessed?.(processed);
    this.lastSeq = frame.seq;
    this.scheduleAck();
  }

  private scheduleAck(): void {
    if (this.lastSeq - this.ackedSeq >= (this.options.ackEvery ?? 5)) {
      this.sendAck();
      return;
    }
    this.ackTimer ??= setTimeout(() => this.sendAck(), this.options.ackDelayMs ?? 50);
  }

  private sendAck(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    // Unsent acks are not lost: the next hello resumes from lastSeq, which acks as much.
    if (!this.open || this.lastSeq <= this.ackedSeq) return;
    this.ws!.send(JSON.stringify({ type: 'ack', seq: this.lastSeq }));
    this.ackedSeq = this.lastSeq;
  }
}
