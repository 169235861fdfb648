/**
 * One client WebSocket: the hello handshake, then acks, nacks, refresh and pings, its heartbeat
 * (WebSocket ping/pong), and the `Subscriber` side of the user's stream. Its states and their
 * transitions are in connection-state.ts. Whatever ends the connection (a close, the client, the
 * heartbeat), it enters `closed` once: the stream is detached and `connection-closed` is
 * emitted exactly once.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { RelayConfig } from '../config.js';
import { background } from '../background.js';
import { errorMessage, isRelayError } from '../errors.js';
import type { HandshakeOutcome, RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { CloseCode, retryAfterReason } from '../protocol/close-codes.js';
import {
  ErrorFrameCode,
  decodeClientFrame,
  encodeFrame,
  type ClientFrame,
  type ErrorFrame,
  type HelloFrame,
  type PongFrame,
  type ServerFrame,
} from '../protocol/frames.js';
import type { StreamRegistry } from '../delivery/stream-registry.js';
import type { Subscriber, UserStream } from '../delivery/user-stream.js';
import { AUTH_FAILURES_REFUSAL, OPEN_AUTH_GATE, type AuthGate } from '../overload/auth-failures.js';
import { TokenBucket } from '../overload/token-bucket.js';
import { settledWithin } from '../settle.js';
import { decideAckProgress } from './ack-progress.js';
import { authenticateHello, verifyToken, type AuthResult, type Identity } from './auth.js';
import { backgroundClock, type BackgroundClock, type TimerHandle } from '../delivery/background-clock.js';
import { TokenExpiry } from './token-expiry.js';
import { nextState, type ConnectionState } from './connection-state.js';
import { DeliveryStatus, type StatusSource } from './delivery-status.js';
import { closeReason } from './close-reason.js';
import { PongLiveness } from './heartbeat.js';
import { rawDataToString } from './raw-data.js';
import { SocketWriter } from './socket-writer.js';
import type { TokenKeys } from './token-keys.js';
import type { PresenceSink } from '../presence/presence-tracker.js';

export interface ClientConnectionOptions {
  config: RelayConfig;
  registry: StreamRegistry;
  logger: Logger;
  /** The identity from the upgrade's Authorization header, if it had one. */
  headerIdentity: Identity | undefined;
  /** The keys that verify hello and refresh tokens (the relay's one set: reloads reach every connection). */
  tokenKeys: TokenKeys;
  /**
   * The failed-authentication limit of the connection's address: a hello from an address out of
   * failures is refused before its token is verified, and every failed authentication counts.
   */
  authGate?: AuthGate;
  /** Jittered retry-after (ms) for 1013 refusals. */
  retryAfterMs: () => number;
  /** Called once when the connection leaves the awaiting-hello state (admission counts these). */
  onHelloSettled: () => void;
  /** A node-wide reason delivery is paused (breaker open, broker blocked), told after `welcome`. */
  nodeDegraded?: () => string | undefined;
  events?: RelayEvents;
  /** The upgraded TCP socket under `ws`: frames sent in one turn are corked into one write. */
  socket?: Pick<Duplex, 'cork' | 'uncork'>;
  onClose: (connection: ClientConnection) => void;
  /** Told when the connection is welcomed and when it closes after that (presence); none: not told. */
  presence?: PresenceSink;
  /** Time and timers (the system clock when omitted). */
  clock?: BackgroundClock;
}

/** How long a client has to answer a close frame before its socket is cut. */
const CLOSE_HANDSHAKE_MS = 5_000;
/** How long a socket that is no longer read from is kept after its close frame (see `close`). */
const UNREAD_CLOSE_MS = 500;
/** What `ws` reports for a socket cut without a close frame; a heartbeat cut is counted under it. */
const NO_CLOSE_FRAME = 1006;

export class ClientConnection implements Subscriber {
  readonly session = randomUUID();
  window = 0;
  private state: ConnectionState = 'awaiting-hello';
  private user: string | undefined;
  private stream: UserStream | undefined;
  private helloTimer: TimerHandle | undefined;
  private readonly expiry: TokenExpiry;
  private readonly liveness = new PongLiveness();
  private readonly clock: BackgroundClock;
  private queued: string[] = [];
  private readonly writer: SocketWriter;
  private readonly delivery = new DeliveryStatus();
  private lastAckProgressAt: number;
  private readonly inbound: TokenBucket;
  private readonly log: Logger;

  constructor(
    private readonly ws: WebSocket,
    private readonly options: ClientConnectionOptions,
  ) {
    this.log = options.logger.child({ session: this.session });
    this.clock = options.clock ?? backgroundClock;
    this.lastAckProgressAt = this.clock.now();
    this.expiry = new TokenExpiry(this.clock, () => this.close(CloseCode.tokenExpired, 'token expired'));
    this.writer = new SocketWriter(ws, {
      highWaterBytes: options.config.sendBufferHighWaterBytes,
      ...(options.socket ? { socket: options.socket } : {}),
      onDrained: () => this.stream?.resume(this),
    });
    this.inbound = new TokenBucket(options.config.frameRatePerSec, options.config.frameBurst, this.clock.now());
    this.helloTimer = this.clock.setTimeout(() => this.close(CloseCode.unauthenticated, 'hello timeout'), options.config.helloTimeoutMs);
    ws.on('message', (data, isBinary) => this.onMessage(rawDataToString(data), isBinary));
    ws.on('pong', (data) => this.liveness.pong(data.toString('utf8')));
    ws.on('close', (code) => this.finish(code));
    ws.on('error', (error) => this.log.debug({ err: errorMessage(error) }, 'socket error'));
  }

  get userId(): string | undefined {
    return this.user;
  }

  /** A method, not a getter, so that TypeScript does not narrow the state across awaits. */
  private isClosed(): boolean {
    return this.state === 'closed';
  }

  get isOpen(): boolean {
    return this.state === 'open';
  }

  /** Moves to `to`; a transition the table does not allow throws (IllegalTransitionError). */
  private moveTo(to: ConnectionState): void {
    this.state = nextState(this.state, to);
  }

  // Subscriber -------------------------------------------------------------------------------

  send(frame: string): void {
    if (this.state !== 'closed') this.writer.sendMsg(frame);
  }

  writable(): boolean {
    return this.state === 'open' && !this.writer.blocked;
  }

  /** The user's stream paused or resumed delivery (see `nodeStatus` for the node's own causes). */
  status(state: 'ok' | 'degraded', reason?: string): void {
    this.setDegraded('stream', state === 'degraded' ? (reason ?? 'degraded') : undefined);
  }

  /** The node paused delivery (breaker open, broker blocked) for `reason`, or resumed it (undefined). */
  nodeStatus(reason: string | undefined): void {
    this.setDegraded('node', reason);
  }

  private setDegraded(source: StatusSource, reason: string | undefined): void {
    this.delivery.set(source, reason);
    if (this.state === 'open') this.showStatus();
  }

  private showStatus(): void {
    const frame = this.delivery.change();
    if (frame) this.sendFrame(frame);
  }

  reset(epoch: string, lastSeq: number, reason: string): void {
    this.sendFrame({ type: 'reset', epoch, lastSeq, reason });
    this.close(CloseCode.restarting, 'epoch reset');
  }

  resync(reason: string): void {
    this.log.info({ reason }, 'closing for resync');
    this.close(CloseCode.restarting, 'resync');
  }

  // Frames ------------------------------------------------------------------------------------

  private sendFrame(frame: ServerFrame): void {
    if (this.state !== 'closed') this.writer.sendControl(encodeFrame(frame));
  }

  /** A frame the client provoked: one that does not fit under the send buffer's mark closes the connection instead. */
  private reply(frame: PongFrame | ErrorFrame): void {
    if (this.state === 'closed' || this.writer.reply(encodeFrame(frame))) return;
    this.log.info({ user: this.user, bufferedAmount: this.ws.bufferedAmount }, 'send buffer full; closing');
    this.close(CloseCode.overloaded, retryAfterReason(this.options.retryAfterMs(), 'send-buffer-full'), { stopReading: true });
  }

  private error(code: string, message: string, seq?: number): void {
    this.reply(seq === undefined ? { type: 'error', code, message } : { type: 'error', code, message, seq });
  }

  private onMessage(text: string, isBinary: boolean, charge = true): void {
    if (this.state === 'closed') return;
    if (isBinary) return this.close(CloseCode.policyViolation, 'binary frames are not accepted');
    const decoded = decodeClientFrame(text);
    if (!decoded.ok) return this.close(CloseCode.policyViolation, decoded.reason);
    const frame = decoded.frame;
    // An ack that moves this connection forward is bounded by the msg frames it was sent (one
    // per message at most), so a client acking every message at any delivery rate is not
    // refused; every other frame, stale acks included, is charged against the frame rate.
    const progress = frame.type === 'ack' && this.state === 'open' && this.stream?.isProgress(this, frame.seq) === true;
    if (charge && !progress && !this.inbound.take(this.clock.now())) {
      this.options.events?.emit('refused', 'frame-rate');
      return this.close(CloseCode.policyViolation, 'rate limit: too many frames');
    }
    if (this.state === 'awaiting-hello') {
      if (frame.type !== 'hello') return this.close(CloseCode.policyViolation, 'expected hello first');
      background(this.onHello(frame), (error) => {
        this.log.error({ err: errorMessage(error) }, 'hello failed');
        this.close(CloseCode.internalError, 'internal error');
      });
      return;
    }
    if (this.state === 'authenticating' || this.state === 'attaching') {
      if (frame.type === 'ping') return this.reply(frame.id === undefined ? { type: 'pong' } : { type: 'pong', id: frame.id });
      this.queued.push(text);
      return;
    }
    this.onFrame(frame);
  }

  private onFrame(frame: ClientFrame): void {
    const stream = this.stream;
    switch (frame.type) {
      case 'hello':
        return this.error(ErrorFrameCode.duplicateHello, 'hello was already received on this connection; ignored');
      case 'ack': {
        const outcome = stream?.ack(this, frame.seq);
        if (outcome === 'ok') this.lastAckProgressAt = this.clock.now();
        if (outcome === 'unknown')
          this.error(ErrorFrameCode.unknownSeq, `ack for seq ${frame.seq}, which was not sent on this connection`, frame.seq);
        return;
      }
      case 'nack': {
        const outcome = stream?.nack(this, frame.seq, frame.requeue);
        if (outcome === 'unknown')
          this.error(ErrorFrameCode.unknownSeq, `nack for seq ${frame.seq}, which is not unacked on this connection`, frame.seq);
        if (outcome === 'dead-lettered' && frame.requeue) {
          this.error(ErrorFrameCode.nackLimit, `seq ${frame.seq} was nacked too often and is dead-lettered`, frame.seq);
        }
        if (outcome === 'processed') {
          const detail = `seq ${frame.seq} was nacked too often; another connection of this user already processed it, so it is not dead-lettered`;
          this.error(ErrorFrameCode.nackLimit, detail, frame.seq);
        }
        return;
      }
      case 'refresh':
        return this.onRefresh(frame.token);
      case 'ping':
        return this.reply(frame.id === undefined ? { type: 'pong' } : { type: 'pong', id: frame.id });
    }
  }

  /** Ends a hello that could not attach: 1013 with `why` (the client retries), or 1011 without. */
  private refuseAttach(detail: string, why: 'unavailable' | 'attach-timeout' | undefined): void {
    this.options.events?.emit('handshake', 'unavailable');
    this.log.warn({ user: this.user, err: detail }, 'could not attach the connection');
    if (why) return this.close(CloseCode.overloaded, retryAfterReason(this.options.retryAfterMs(), why));
    this.close(CloseCode.internalError, 'internal error');
  }

  private closeForAuth(result: Exclude<AuthResult, { ok: true }>): void {
    (this.options.authGate ?? OPEN_AUTH_GATE).failed();
    this.options.events?.emit('handshake', result.failure);
    // The client gets the generic reason; which check failed is for operators only: the category
    // at info (a newcomer's wrong JWT_SECRET shows up at once), the library's detail at debug.
    // Neither carries the token.
    this.log.info({ failure: result.failure }, 'token refused');
    this.log.debug({ failure: result.failure, detail: result.detail }, 'token refused: detail');
    const code =
      result.failure === 'expired'
        ? CloseCode.tokenExpired
        : result.failure === 'forbidden'
          ? CloseCode.forbidden
          : CloseCode.unauthenticated;
    this.close(code, result.reason);
  }

  private async onHello(hello: HelloFrame): Promise<void> {
    this.settleHello();
    const wait = (this.options.authGate ?? OPEN_AUTH_GATE).retryAfterMs();
    if (wait > 0) {
      // Resumable (1013): behind the same address may be clients that did nothing wrong; they
      // come back spread out, and not before the address may try again.
      this.options.events?.emit('handshake', 'refused');
      this.options.events?.emit('refused', AUTH_FAILURES_REFUSAL);
      return this.close(CloseCode.overloaded, retryAfterReason(Math.max(wait, this.options.retryAfterMs()), AUTH_FAILURES_REFUSAL));
    }
    this.moveTo('authenticating');
    const auth = await authenticateHello(hello.token, this.options.headerIdentity, this.options.tokenKeys, this.clock.now());
    if (this.isClosed()) return;
    if (!auth.ok) return this.closeForAuth(auth);
    const { config } = this.options;
    this.user = auth.identity.user;
    this.window = Math.min(hello.window ?? config.windowDefault, config.windowMax);
    this.moveTo('attaching');
    this.expiry.arm(auth.identity.expiresAt);
    const attaching = this.options.registry.attach(this.user, this, hello.resume);
    // A stream that takes too long (RabbitMQ slow to start the consumer) does not hold the
    // client: it gets 1013 and retries, and the attach that goes on meanwhile is undone when it
    // completes.
    if (!(await settledWithin(attaching, config.attachTimeoutMs))) {
      background(
        attaching.then(({ stream }) => stream.detach(this)),
        () => undefined,
      );
      if (this.isClosed()) return;
      this.options.events?.emit('refused', 'attach-timeout');
      return this.refuseAttach(`user stream not ready within ${config.attachTimeoutMs} ms`, 'attach-timeout');
    }
    let attached;
    try {
      attached = await attaching;
    } catch (error) {
      if (this.isClosed()) return;
      const retryable = !isRelayError(error) || error.retryable;
      return this.refuseAttach(errorMessage(error), retryable ? 'unavailable' : undefined);
    }
    const { stream, result } = attached;
    this.stream = stream;
    if (this.isClosed()) {
      stream.detach(this);
      return;
    }
    if (result.reset) this.sendFrame({ type: 'reset', ...result.reset });
    if (result.warning) this.error(ErrorFrameCode.resumeAhead, result.warning);
    this.sendFrame({
      type: 'welcome',
      session: this.session,
      user: this.user,
      epoch: result.epoch,
      lastSeq: result.lastSeq,
      resumed: result.resumed,
      recovered: result.recovered,
      window: this.window,
      heartbeatMs: config.heartbeatMs,
    });
    const outcome: HandshakeOutcome = result.reset ? 'reset' : result.resumed ? (result.recovered ? 'resumed' : 'not-recovered') : 'new';
    this.options.events?.emit('handshake', outcome);
    this.log.info({ user: this.user, lastSeq: result.lastSeq, resumed: result.resumed, recovered: result.recovered }, 'connection open');
    this.moveTo('open');
    this.options.presence?.opened({ session: this.session, user: this.user, device: hello.device });
    this.lastAckProgressAt = this.clock.now();
    this.delivery.set('stream', stream.degradedReason);
    this.delivery.set('node', this.options.nodeDegraded?.());
    this.showStatus();
    stream.resume(this);
    const queued = this.queued;
    this.queued = [];
    for (const text of queued) this.onMessage(text, false, false);
  }

  private onRefresh(token: string): void {
    const ticket = this.expiry.beginRefresh();
    background(this.refresh(token, ticket), (error) => {
      this.log.error({ err: errorMessage(error) }, 'refresh failed');
      this.close(CloseCode.internalError, 'internal error');
    });
  }

  private async refresh(token: string, ticket: number): Promise<void> {
    const auth = await verifyToken(token, this.options.tokenKeys, this.clock.now());
    if (this.isClosed()) return;
    if (!auth.ok) return this.closeForAuth(auth);
    if (auth.identity.user !== this.user) return this.close(CloseCode.forbidden, 'refresh token is for another user');
    // Refreshes can settle out of order (one may wait for a JWKS fetch): TokenExpiry keeps the latest.
    this.expiry.applyRefresh(ticket, auth.identity.expiresAt);
  }

  /**
   * Closes a client that holds unacked messages and made no ack progress for `ackTimeoutMs`
   * (ack-progress.ts), with a resumable code: its messages go back to RabbitMQ in order and it
   * resumes when it reconnects.
   */
  checkAckProgress(now: number): void {
    if (this.state !== 'open' || !this.stream) return;
    const decision = decideAckProgress({
      unacked: this.stream.unacked(this),
      lastProgressAt: this.lastAckProgressAt,
      now,
      ackTimeoutMs: this.options.config.ackTimeoutMs,
    });
    if (decision === 'idle') this.lastAckProgressAt = now;
    if (decision !== 'timed-out') return;
    this.options.events?.emit('refused', 'ack-timeout');
    this.log.info({ user: this.user }, 'no ack progress; closing');
    this.close(CloseCode.overloaded, retryAfterReason(this.options.retryAfterMs(), 'ack-timeout'));
  }

  private settleHello(): void {
    if (this.helloTimer === undefined) return;
    this.helloTimer.cancel();
    this.helloTimer = undefined;
    this.options.onHelloSettled();
  }

  // Lifecycle ---------------------------------------------------------------------------------

  /**
   * Sends a close frame; the socket is terminated if the client does not answer in time. A client
   * closed for misbehaving (1008, or one that provokes replies and does not read them) is not
   * read from any more: what it keeps sending waits in the kernel (TCP flow control stops it)
   * instead of being parsed into the relay's memory until the socket is terminated.
   */
  close(code: number, reason: string, options: { stopReading?: boolean } = {}): void {
    if (this.state === 'closed') return;
    this.finish(code);
    const stopReading = options.stopReading === true || code === CloseCode.policyViolation;
    // A client that is not read cannot answer the close frame: its socket goes after a short
    // wait for the frame to be written, and the client's close event comes then.
    if (stopReading) this.ws.pause();
    this.ws.close(code, closeReason(reason));
    this.clock.setTimeout(() => this.ws.terminate(), stopReading ? UNREAD_CLOSE_MS : CLOSE_HANDSHAKE_MS);
  }

  /**
   * One heartbeat (heartbeat.ts): a WebSocket ping, or, when the previous ping went unanswered,
   * the end of the connection (no close frame; counted as 1006).
   */
  heartbeat(): void {
    if (this.state === 'closed') return;
    const beat = this.liveness.beat();
    if (beat.action === 'terminate') return this.terminate();
    this.ws.ping(beat.payload);
  }

  /** Drops the connection without a close frame (the client sees 1006). */
  terminate(): void {
    this.finish(NO_CLOSE_FRAME);
    this.ws.terminate();
  }

  /** Enters `closed` once, whichever path ends the connection, with the code it ended with. */
  private finish(code: number): void {
    if (this.state === 'closed') return;
    // One info line per connection that opened (its `connection open` line is the other); one
    // that never did (bad hello, refused token, attach failure) was logged where it was refused.
    const wasOpen = this.state === 'open';
    if (wasOpen) this.log.info({ user: this.user, code }, 'connection closed');
    else this.log.debug({ user: this.user, code, state: this.state }, 'connection closed before open');
    this.moveTo('closed');
    if (wasOpen) this.options.presence?.closed(this.session);
    this.options.events?.emit('connection-closed', code);
    this.settleHello();
    this.expiry.stop();
    this.stream?.detach(this);
    this.options.onClose(this);
  }
}
