/**
 * One WebSocket connection to the relay, from opening to close: sends `hello`, waits for
 * `welcome`, decodes frames, coalesces acks and watches liveness. It knows nothing about
 * positions or consumers; the client decides what the frames mean.
 *
 * Guarantees: `closed` is reported exactly once however the connection ends (relay close,
 * network failure, connect timeout, heartbeat timeout, local close); after it no other listener
 * method is called and no timer of this connection is left.
 */
import {
  SUBPROTOCOL,
  encodeFrame,
  type ClientFrame,
  type ErrorFrame,
  type HelloFrame,
  type MsgFrame,
  type ResetFrame,
  type StatusFrame,
  type WelcomeFrame,
} from '../protocol/frame-types.js';
import { decodeServerFrame } from '../protocol/server-frames.js';
import { AckCoalescer } from './ack-coalescer.js';
import type { Clock, TimerHandle } from './clock.js';
import { ClientErrorCode, InboxClientError } from './errors.js';
import { LivenessMonitor } from './liveness.js';
import { OPEN_STATE, observeProtocolPings, type WebSocketConstructorLike, type WebSocketLike } from './transport.js';

/** The code reported when the client gives up on a connection itself (as runtimes do for a dropped one). */
export const ABNORMAL_CLOSURE = 1006;
/** How long a local close waits for the relay's close frame before calling the connection closed. */
export const CLOSE_HANDSHAKE_TIMEOUT_MS = 2_000;

/** What the connection reports, in wire order. */
export interface ConnectionListener {
  welcome(frame: WelcomeFrame): void;
  message(frame: MsgFrame): void;
  reset(frame: ResetFrame): void;
  status(frame: StatusFrame): void;
  serverError(frame: ErrorFrame): void;
  protocolError(error: InboxClientError): void;
  closed(code: number, reason: string): void;
}

/** Counters the connection adds to (owned by the client, shared across connections). */
export interface ConnectionCounters {
  acksSent: number;
  nacksSent: number;
}

export interface ConnectionOptions {
  readonly url: string;
  readonly webSocket: WebSocketConstructorLike;
  readonly hello: HelloFrame;
  readonly clock: Clock;
  /** From construction to `welcome`. */
  readonly connectTimeoutMs: number;
  readonly ackDelayMs: number;
  readonly ackBatch: number;
  readonly counters: ConnectionCounters;
  readonly listener: ConnectionListener;
}

type Phase = 'opening' | 'handshaking' | 'open' | 'closing' | 'closed';

interface Terminable {
  terminate(): void;
}

export class Connection {
  readonly #options: ConnectionOptions;
  readonly #socket: WebSocketLike;
  readonly #seesPings: boolean;
  readonly #closeWaiters: Array<() => void> = [];
  #phase: Phase = 'opening';
  #timer: TimerHandle | undefined;
  #acks: AckCoalescer | undefined;
  #liveness: LivenessMonitor | undefined;
  #epoch: string | undefined;
  #pingId = 0;

  /** Opens the socket. Throws only when the WebSocket constructor does. */
  constructor(options: ConnectionOptions) {
    this.#options = options;
    const socket = new options.webSocket(options.url, [SUBPROTOCOL]);
    this.#socket = socket;
    this.#seesPings = observeProtocolPings(socket, () => this.#liveness?.seen());
    socket.addEventListener('open', () => this.#onOpen());
    socket.addEventListener('message', (event) => this.#onMessage(event.data));
    socket.addEventListener('close', (event) => this.#finish(event.code, event.reason));
    // An 'error' is always followed by 'close', which carries what the client acts on.
    socket.addEventListener('error', () => undefined);
    this.#timer = options.clock.setTimeout(() => this.abandon('connect timeout'), options.connectTimeoutMs);
  }

  /** True between `welcome` and the start of closing. */
  get isOpen(): boolean {
    return this.#phase === 'open';
  }

  /** True once `closed` has been reported. */
  get isClosed(): boolean {
    return this.#phase === 'closed';
  }

  /** The epoch of this connection's numbering: the welcome's, or a later reset's. */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /** Records `seq` as processed; the ack goes out coalesced. */
  acknowledge(seq: number): void {
    if (this.#phase === 'open') this.#acks?.processed(seq);
  }

  /** Flushes pending acks, then sends `nack`. Returns false when the connection can no longer send. */
  nack(seq: number, requeue: boolean): boolean {
    if (this.#phase !== 'open') return false;
    this.#acks?.flush();
    const sent = this.#send({ type: 'nack', seq, requeue });
    if (sent) this.#options.counters.nacksSent += 1;
    return sent;
  }

  /** Sends `refresh {token}`. Returns false when the connection can no longer send. */
  refresh(token: string): boolean {
    return this.#phase === 'open' && this.#send({ type: 'refresh', token });
  }

  /** Flushes acks and closes with `code`; resolves once closed (bounded by {@link CLOSE_HANDSHAKE_TIMEOUT_MS}). */
  close(code: number, reason: string): Promise<void> {
    if (this.#phase === 'closed') return Promise.resolve();
    const done = new Promise<void>((resolve) => this.#closeWaiters.push(resolve));
    if (this.#phase !== 'closing') {
      this.#acks?.flush();
      this.#phase = 'closing';
      this.#stopTimers();
      try {
        this.#socket.close(code, reason);
      } catch {
        // Closing an unopened socket may throw in some runtimes; the timeout below ends it.
      }
      this.#timer = this.#options.clock.setTimeout(() => this.#finish(ABNORMAL_CLOSURE, reason), CLOSE_HANDSHAKE_TIMEOUT_MS);
    }
    return done;
  }

  /**
   * Gives up on the connection now, without waiting for a close handshake (a dead peer would
   * never answer), and reports it closed with {@link ABNORMAL_CLOSURE}.
   */
  abandon(reason: string): void {
    if (this.#phase === 'closed') return;
    this.#phase = 'closing';
    this.#stopTimers();
    try {
      const terminable = this.#socket as Partial<Terminable>;
      if (typeof terminable.terminate === 'function') terminable.terminate.call(this.#socket);
      else this.#socket.close(1000, reason);
    } catch {
      // The socket is being dropped either way.
    }
    this.#finish(ABNORMAL_CLOSURE, reason);
  }

  #onOpen(): void {
    if (this.#phase !== 'opening') return;
    this.#phase = 'handshaking';
    this.#send(this.#options.hello);
  }

  #onMessage(data: unknown): void {
    if (this.#phase !== 'handshaking' && this.#phase !== 'open') return;
    this.#liveness?.seen();
    if (typeof data !== 'string') {
      this.#protocolError('the relay sent a binary frame');
      return;
    }
    const decoded = decodeServerFrame(data);
    if (!decoded.ok) {
      this.#protocolError(`undecodable frame from the relay: ${decoded.reason}`);
      return;
    }
    const frame = decoded.frame;
    const listener = this.#options.listener;
    switch (frame.type) {
      case 'welcome':
        if (this.#phase !== 'handshaking') return this.#protocolError('unexpected second welcome');
        this.#onWelcome(frame);
        return;
      case 'msg':
        if (this.#phase !== 'open') return this.#protocolError('msg before welcome');
        listener.message(frame);
        return;
      case 'reset':
        this.#epoch = frame.epoch;
        listener.reset(frame);
        return;
      case 'status':
        listener.status(frame);
        return;
      case 'error':
        listener.serverError(frame);
        return;
      case 'pong':
        return;
    }
  }

  #onWelcome(frame: WelcomeFrame): void {
    const { clock, ackDelayMs, ackBatch, counters } = this.#options;
    this.#phase = 'open';
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#epoch = frame.epoch;
    this.#acks = new AckCoalescer({
      window: frame.window,
      maxDelayMs: ackDelayMs,
      maxBatch: ackBatch,
      clock,
      send: (seq) => {
        if (this.#send({ type: 'ack', seq })) counters.acksSent += 1;
      },
    });
    this.#liveness = new LivenessMonitor({
      heartbeatMs: frame.heartbeatMs,
      clock,
      onDead: () => this.abandon('heartbeat timeout'),
      ...(this.#seesPings ? {} : { sendPing: () => this.#send({ type: 'ping', id: ++this.#pingId }) }),
    });
    this.#liveness.start();
    this.#options.listener.welcome(frame);
  }

  #protocolError(message: string): void {
    this.#options.listener.protocolError(new InboxClientError(ClientErrorCode.badFrame, message));
  }

  #send(frame: ClientFrame): boolean {
    if (this.#socket.readyState !== OPEN_STATE) return false;
    try {
      this.#socket.send(encodeFrame(frame));
      return true;
    } catch {
      return false;
    }
  }

  #stopTimers(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#liveness?.stop();
    this.#acks?.dispose();
  }

  #finish(code: number, reason: string): void {
    if (this.#phase === 'closed') return;
    this.#phase = 'closed';
    this.#stopTimers();
    this.#options.listener.closed(code, reason);
    for (const resolve of this.#closeWaiters.splice(0)) resolve();
  }
}
