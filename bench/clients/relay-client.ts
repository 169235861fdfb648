/**
 * A bench client of the inbox-relay v1 protocol over `ws`: hello (with resume once it has a
 * position), one cumulative `ack` per message as soon as it is processed, and the counters the
 * bench reports (gaps, repeated seqs, resets, refusals).
 */
import WebSocket from 'ws';
import { SUBPROTOCOL, STREAM_PATH } from '../../src/protocol/frames.js';
import type { MsgFrame } from '../../src/protocol/frame-types.js';
import { parseRetryAfterMs } from '../../src/protocol/close-codes.js';
import { rawDataToString } from '../../src/server/raw-data.js';
import { isPayload } from '../load/payload.js';
import type { Receiver } from '../load/tracker.js';
import { nowUs } from '../lib/time.js';

export interface Welcome {
  epoch: string;
  lastSeq: number;
  resumed: boolean;
  recovered: boolean;
}

export class ConnectRefused extends Error {
  constructor(
    message: string,
    /** How long the relay asked us to wait (ms), if it said. */
    readonly retryAfterMs: number | undefined,
  ) {
    super(message);
  }
}

/** Counters shared by every client of one scenario. */
export interface ClientStats {
  /** A seq arrived that is not lastSeq + 1. */
  gaps: number;
  /** A seq at or below the one already processed arrived again. */
  repeatedSeqs: number;
  resets: number;
  notRecovered: number;
  errorsFrames: number;
}

export function newClientStats(): ClientStats {
  return { gaps: 0, repeatedSeqs: 0, resets: 0, notRecovered: 0, errorsFrames: 0 };
}

/**
 * How the client acks: after every message, or coalesced like the SDK's AckCoalescer (src/client/
 * ack-coalescer.ts): once `batch` messages are processed and unacked, or `delayMs` after the first.
 */
export type AckPolicy = { kind: 'each' } | { kind: 'coalesced'; batch: number; delayMs: number };

export class RelayClient {
  epoch: string | undefined;
  /** Highest seq processed (acked, or about to be when acks are coalesced). */
  lastSeq = 0;
  private ws: WebSocket | undefined;
  private unacked = 0;
  private ackTimer: NodeJS.Timeout | undefined;
  /**
   * Sees every `msg` frame as received (receipt time in monotonic µs), before it is acked: for
   * scenarios whose messages are not bench payloads (the fan-out checks each frame's `topic`).
   */
  onMsgFrame: ((frame: MsgFrame, receivedUs: number) => void) | undefined;

  constructor(
    private readonly baseUrl: string,
    readonly user: string,
    private readonly token: string,
    private readonly window: number,
    private readonly receiver: () => Receiver,
    private readonly stats: ClientStats,
    private readonly ackPolicy: AckPolicy = { kind: 'each' },
  ) {}

  get open(): boolean {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Opens a connection and completes the handshake (resuming when it has a position). */
  connect(timeoutMs = 30_000): Promise<Welcome> {
    const ws = new WebSocket(`${this.baseUrl}${STREAM_PATH}`, [SUBPROTOCOL], { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    this.ws = ws;
    return new Promise<Welcome>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => fail(new Error('no welcome in time')), timeoutMs);
      const fail = (error: Error): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        ws.terminate();
        reject(error);
      };
      ws.on('open', () => {
        const resume = this.epoch === undefined ? undefined : { epoch: this.epoch, lastSeq: this.lastSeq };
        ws.send(JSON.stringify({ type: 'hello', token: this.token, window: this.window, ...(resume ? { resume } : {}) }));
      });
      ws.on('unexpected-response', (_request, response) => {
        const header = response.headers['retry-after'];
        const retry = typeof header === 'string' ? Number(header) * 1000 : undefined;
        fail(new ConnectRefused(`upgrade refused with HTTP ${response.statusCode ?? 0}`, retry));
      });
      ws.on('error', (error) => fail(error));
      ws.on('close', (code, reason) => {
        const text = reason.toString();
        fail(new ConnectRefused(`closed with ${code} ${text}`, parseRetryAfterMs(text)));
      });
      ws.on('message', (data) => {
        const receivedUs = nowUs();
        const frame = JSON.parse(rawDataToString(data)) as { type: string; [key: string]: unknown };
        if (frame.type === 'msg') {
          this.onMsgFrame?.(frame as unknown as MsgFrame, receivedUs);
          this.onMsg(ws, frame.seq as number, frame.data, receivedUs);
        } else if (frame.type === 'welcome') {
          const welcome = frame as unknown as Welcome;
          this.epoch = welcome.epoch;
          if (!welcome.recovered) this.stats.notRecovered += 1;
          this.lastSeq = welcome.lastSeq;
          if (!settled) {
            settled = true;
            clearTimeout(timer);
            resolve(welcome);
          }
        } else if (frame.type === 'reset') {
          this.stats.resets += 1;
          this.epoch = frame.epoch as string;
          this.lastSeq = frame.lastSeq as number;
        } else if (frame.type === 'error') {
          this.stats.errorsFrames += 1;
        }
      });
    });
  }

  private onMsg(ws: WebSocket, seq: number, data: unknown, receivedUs: number): void {
    if (seq <= this.lastSeq) {
      this.stats.repeatedSeqs += 1;
    } else {
      if (seq !== this.lastSeq + 1) this.stats.gaps += 1;
      this.lastSeq = seq;
    }
    if (isPayload(data)) this.receiver().onPayload(data, receivedUs);
    const policy = this.ackPolicy;
    if (policy.kind === 'each') {
      ws.send(`{"type":"ack","seq":${seq}}`);
      return;
    }
    this.unacked += 1;
    if (this.unacked >= policy.batch) {
      this.flushAck(ws);
    } else {
      this.ackTimer ??= setTimeout(() => this.flushAck(ws), policy.delayMs);
    }
  }

  private flushAck(ws: WebSocket): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    if (this.unacked === 0 || ws !== this.ws || ws.readyState !== WebSocket.OPEN) return;
    this.unacked = 0;
    ws.send(`{"type":"ack","seq":${this.lastSeq}}`);
  }

  /** Drops the TCP connection without a close handshake (a network failure, as the relay sees it). */
  drop(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.unacked = 0;
    this.ws?.removeAllListeners('close');
    this.ws?.on('close', () => undefined);
    this.ws?.terminate();
  }

  close(): void {
    clearTimeout(this.ackTimer);
    this.ackTimer = undefined;
    this.ws?.removeAllListeners('close');
    this.ws?.on('close', () => undefined);
    this.ws?.close(1000);
  }
}
