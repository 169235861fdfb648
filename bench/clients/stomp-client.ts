/**
 * A minimal STOMP 1.2 client over a WebSocket (RabbitMQ Web-STOMP): CONNECT, one SUBSCRIBE with
 * `client-individual` acks and a prefetch, an ACK per MESSAGE as soon as it is processed.
 */
import WebSocket from 'ws';
import { rawDataToString } from '../../src/server/raw-data.js';
import { isPayload } from '../load/payload.js';
import type { Receiver } from '../load/tracker.js';
import { nowUs } from '../lib/time.js';
import { StompDecoder, encodeStompFrame, type StompFrame } from './stomp-frame.js';

/**
 * The client promises a heart-beat this often (and wants none from the broker). Web-STOMP closes a
 * WebSocket that received nothing for 60 s (its idle timeout), which an idle subscriber would hit.
 */
const HEARTBEAT_MS = 10_000;

export class StompClient {
  /** Set once the broker or the network closed this connection (not by `close()`). */
  lost = false;
  private readonly decoder = new StompDecoder();
  private heartbeat: NodeJS.Timeout | undefined;
  private waiters = new Map<string, (frame: StompFrame) => void>();
  private closing = false;
  private failure: ((error: Error) => void) | undefined;

  private constructor(
    private readonly ws: WebSocket,
    private readonly receiver: () => Receiver,
  ) {
    ws.on('message', (data) => {
      const receivedUs = nowUs();
      for (const frame of this.decoder.push(rawDataToString(data))) this.onFrame(frame, receivedUs);
    });
    ws.on('close', () => {
      clearInterval(this.heartbeat);
      if (!this.closing) this.lost = true;
      this.failure?.(new Error('STOMP connection closed'));
    });
    ws.on('error', (error) => this.failure?.(error));
  }

  private onFrame(frame: StompFrame, receivedUs: number): void {
    if (frame.command === 'MESSAGE') {
      const data: unknown = JSON.parse(frame.body);
      if (isPayload(data)) this.receiver().onPayload(data, receivedUs);
      const ack = frame.headers.ack;
      if (ack !== undefined) this.ws.send(encodeStompFrame('ACK', { id: ack }));
      return;
    }
    if (frame.command === 'ERROR') {
      this.failure?.(new Error(`STOMP ERROR: ${frame.headers.message ?? ''} ${frame.body.slice(0, 200)}`));
      return;
    }
    const key = frame.command === 'RECEIPT' ? `RECEIPT:${frame.headers['receipt-id'] ?? ''}` : frame.command;
    const waiter = this.waiters.get(key);
    this.waiters.delete(key);
    waiter?.(frame);
  }

  private expect(key: string, timeoutMs: number): Promise<StompFrame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`STOMP: no ${key} within ${timeoutMs} ms`)), timeoutMs);
      this.failure = (error) => {
        clearTimeout(timer);
        reject(error);
      };
      this.waiters.set(key, (frame) => {
        clearTimeout(timer);
        this.failure = undefined;
        resolve(frame);
      });
    });
  }

  /** Connects and subscribes to `destination`; resolves once the broker confirmed the subscription. */
  static async open(options: {
    url: string;
    login: string;
    passcode: string;
    destination: string;
    prefetch: number;
    receiver: () => Receiver;
    timeoutMs?: number;
  }): Promise<StompClient> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    const ws = new WebSocket(options.url, ['v12.stomp'], { perMessageDeflate: false, handshakeTimeout: timeoutMs });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`Web-STOMP upgrade refused with HTTP ${res.statusCode ?? 0}`)));
    });
    const client = new StompClient(ws, options.receiver);
    const connected = client.expect('CONNECTED', timeoutMs);
    ws.send(
      encodeStompFrame('CONNECT', {
        'accept-version': '1.2',
        host: '/',
        login: options.login,
        passcode: options.passcode,
        'heart-beat': `${HEARTBEAT_MS},0`,
      }),
    );
    await connected;
    client.heartbeat = setInterval(() => {
      if (ws.readyState === WebSocket.OPEN) ws.send('\n');
    }, HEARTBEAT_MS);
    client.heartbeat.unref();
    const receipt = client.expect('RECEIPT:sub-0', timeoutMs);
    ws.send(
      encodeStompFrame('SUBSCRIBE', {
        id: '0',
        destination: options.destination,
        ack: 'client-individual',
        'prefetch-count': String(options.prefetch),
        receipt: 'sub-0',
      }),
    );
    await receipt;
    client.failure = undefined;
    return client;
  }

  close(): void {
    this.closing = true;
    clearInterval(this.heartbeat);
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(encodeStompFrame('DISCONNECT', {}));
    this.ws.close(1000);
    setTimeout(() => this.ws.terminate(), 2_000).unref();
  }
}
