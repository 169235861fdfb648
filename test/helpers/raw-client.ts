/** A WebSocket client that speaks raw frames, for protocol tests that check exact replies. */
import WebSocket from 'ws';
import { SUBPROTOCOL, decodeServerFrame, type ServerFrame } from '../../src/protocol/frames.js';
import { rawDataToString } from '../../src/server/raw-data.js';

export interface RawClientOptions {
  protocols?: string[];
  headers?: Record<string, string>;
  origin?: string;
}

export interface Closed {
  code: number;
  reason: string;
}

export class RawClient {
  readonly frames: ServerFrame[] = [];
  readonly closed: Promise<Closed>;
  /** How the connection closed, once it has. */
  closedWith: Closed | undefined;
  private waiters: (() => void)[] = [];
  private cursor = 0;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data) => {
      const text = rawDataToString(data);
      const decoded = decodeServerFrame(text);
      if (!decoded.ok) throw new Error(`server sent an invalid frame: ${decoded.reason}: ${text}`);
      this.frames.push(decoded.frame);
      this.wake();
    });
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closedWith = { code, reason: reason.toString() };
        resolve(this.closedWith);
        this.wake();
      });
    });
    ws.on('error', () => undefined);
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Opens a connection; rejects with the HTTP status when the upgrade is refused. */
  static connect(url: string, options: RawClientOptions = {}): Promise<RawClient> {
    const ws = new WebSocket(url, options.protocols ?? [SUBPROTOCOL], {
      headers: options.headers ?? {},
      ...(options.origin ? { origin: options.origin } : {}),
    });
    return new Promise((resolve, reject) => {
      const client = new RawClient(ws);
      ws.once('open', () => resolve(client));
      ws.once('unexpected-response', (_request, response) => reject(new HttpRefusal(response.statusCode ?? 0, response.headers)));
      ws.once('error', reject);
    });
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  }

  /** The next frame (after those already taken) that matches, waiting up to `timeoutMs`. */
  async next<T extends ServerFrame['type']>(type: T, timeoutMs = 10_000): Promise<Extract<ServerFrame, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.frames.length) {
        const frame = this.frames[this.cursor++]!;
        if (frame.type === type) return frame as Extract<ServerFrame, { type: T }>;
      }
      if (this.ws.readyState === WebSocket.CLOSED) {
        throw new Error(`connection closed (${this.closedWith?.code} ${this.closedWith?.reason}) while waiting for ${type}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} frame within ${timeoutMs} ms (got ${this.frames.map((f) => f.type).join(',')})`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Resolves once the connection closed, with its code. */
  async closeCode(timeoutMs = 10_000): Promise<Closed> {
    return Promise.race([
      this.closed,
      new Promise<Closed>((_, reject) => setTimeout(() => reject(new Error(`not closed within ${timeoutMs} ms`)), timeoutMs)),
    ]);
  }

  close(): void {
    this.ws.close();
  }

  terminate(): void {
    this.ws.terminate();
  }
}

export class HttpRefusal extends Error {
  constructor(
    readonly status: number,
    readonly headers: Readonly<Record<string, string | string[] | undefined>> = {},
  ) {
    super(`upgrade refused with HTTP ${status}`);
  }
}

export function msgs(frames: ServerFrame[]): Extract<ServerFrame, { type: 'msg' }>[] {
  return frames.filter((frame): frame is Extract<ServerFrame, { type: 'msg' }> => frame.type === 'msg');
}
