/**
 * A test client for the delivery-receipt tests (independent of the SDK): it processes the next
 * seq only, nacks without requeue the messages whose data says `nack: true`, acks cumulatively
 * every few messages, drops its connection at random (no close frame) and resumes from what it
 * processed. It never processes past `maxSeq`, so that messages after it are delivered but never
 * acked. It records which messageIds it acked (processed and covered by an ack it sent or a
 * resume position past them) and which it nacked.
 */
import WebSocket from 'ws';
import { SUBPROTOCOL, decodeServerFrame, type MsgFrame } from '../../src/protocol/frames.js';
import { rawDataToString } from '../../src/server/raw-data.js';

export interface ReceiptClientOptions {
  /** Where to connect; a function is asked again on every connect (a load balancer). */
  url: string | (() => string);
  token: () => string;
  /** The highest seq it processes; later ones are received and left unacked. */
  maxSeq: number;
  dropRate?: number;
  ackEvery?: number;
  random?: () => number;
}

export class ReceiptClient {
  /** Ids processed (not nacked), by seq. */
  private readonly processedIds = new Map<number, string>();
  /** Ids nacked with requeue:false. */
  readonly nacked = new Set<string>();
  /** Ids covered by an ack this client sent or a resume past them. */
  readonly acked = new Set<string>();
  readonly closeCodes: number[] = [];
  readonly resets: number[] = [];
  epoch: string | undefined;
  lastSeq = 0;
  private ackedSeq = 0;
  connections = 0;
  private ws: WebSocket | undefined;
  private stopped = false;

  constructor(private readonly options: ReceiptClientOptions) {}

  start(): void {
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    this.connections += 1;
    const { url } = this.options;
    const ws = new WebSocket(typeof url === 'string' ? url : url(), [SUBPROTOCOL]);
    this.ws = ws;
    ws.on('open', () => {
      const hello: Record<string, unknown> = { type: 'hello', token: this.options.token(), window: 10 };
      if (this.epoch !== undefined) {
        hello.resume = { epoch: this.epoch, lastSeq: this.lastSeq };
        // Resuming past a seq tells the relay it was processed: the same as acking it.
        this.markAcked(this.lastSeq);
      }
      ws.send(JSON.stringify(hello));
    });
    ws.on('message', (raw) => {
      if (ws !== this.ws) return;
      const decoded = decodeServerFrame(rawDataToString(raw));
      if (!decoded.ok) throw new Error(`invalid frame from the relay: ${decoded.reason}`);
      const frame = decoded.frame;
      if (frame.type === 'welcome') {
        if (frame.epoch !== this.epoch && this.epoch !== undefined) this.resets.push(frame.lastSeq);
        this.epoch = frame.epoch;
        this.lastSeq = frame.lastSeq;
        this.ackedSeq = Math.min(this.ackedSeq, frame.lastSeq);
      } else if (frame.type === 'reset') {
        this.resets.push(frame.lastSeq);
        this.epoch = frame.epoch;
        this.lastSeq = frame.lastSeq;
      } else if (frame.type === 'msg') {
        this.onMsg(ws, frame);
      }
    });
    ws.on('close', (code) => {
      this.closeCodes.push(code);
      if (ws === this.ws) setTimeout(() => this.connect(), 20 + Math.random() * 80);
    });
    ws.on('error', () => undefined);
  }

  private onMsg(ws: WebSocket, frame: MsgFrame): void {
    const random = this.options.random ?? Math.random;
    if (frame.seq !== this.lastSeq + 1 || frame.seq > this.options.maxSeq) return;
    this.lastSeq = frame.seq;
    if ((frame.data as { nack?: boolean }).nack === true) {
      this.nacked.add(frame.id);
      ws.send(JSON.stringify({ type: 'nack', seq: frame.seq, requeue: false }));
    } else {
      this.processedIds.set(frame.seq, frame.id);
    }
    if (this.lastSeq - this.ackedSeq >= (this.options.ackEvery ?? 3) || this.lastSeq === this.options.maxSeq) this.sendAck(ws);
    if (random() < (this.options.dropRate ?? 0)) {
      this.ws = undefined;
      ws.terminate();
      setTimeout(() => this.connect(), 20 + random() * 80);
    }
  }

  private sendAck(ws: WebSocket): void {
    ws.send(JSON.stringify({ type: 'ack', seq: this.lastSeq }));
    this.ackedSeq = this.lastSeq;
    this.markAcked(this.lastSeq);
  }

  private markAcked(upTo: number): void {
    for (const [seq, id] of this.processedIds) if (seq <= upTo) this.acked.add(id);
  }

  /** Acks everything processed so far (on the open connection). */
  flushAck(): void {
    if (this.ws?.readyState === WebSocket.OPEN && this.lastSeq > this.ackedSeq) this.sendAck(this.ws);
  }

  stop(): void {
    this.stopped = true;
    const ws = this.ws;
    this.ws = undefined;
    ws?.close();
  }
}
