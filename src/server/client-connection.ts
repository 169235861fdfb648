/**
 * One client WebSocket: the hello handshake, then acks, nacks, refresh and pings, and the
 * `Subscriber` side of the user's stream. States: awaiting-hello -> attaching -> open -> closed.
 * Whatever ends the connection, the stream is detached exactly once.
 */
import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';
import type { RelayConfig } from '../config.js';
import { errorMessage, isRelayError } from '../errors.js';
import type { HandshakeOutcome, RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { CloseCode, retryAfterReason } from '../protocol/close-codes.js';
import { ErrorFrameCode, decodeClientFrame, encodeFrame, type ClientFrame, type HelloFrame, type ServerFrame } from '../protocol/frames.js';
import type { StreamRegistry } from '../delivery/stream-registry.js';
import type { Subscriber, UserStream } from '../delivery/user-stream.js';
import { TokenBucket } from '../overload/token-bucket.js';
import { settledWithin } from '../settle.js';
import { verifyToken, type AuthResult, type Identity } from './auth.js';

type State = 'awaiting-hello' | 'attaching' | 'open' | 'closed';

export interface ClientConnectionOptions {
  config: RelayConfig;
  registry: StreamRegistry;
  logger: Logger;
  /** The identity from the upgrade's Authorization header, if it had one. */
  headerIdentity: Identity | undefined;
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
}

const MAX_TIMER_MS = 2_147_483_647;

export class ClientConnection implements Subscriber {
  readonly session = randomUUID();
  window = 0;
  /** Set by the server's heartbeat sweep; cleared by a pong. */
  awaitingPong = false;
  private state: State = 'awaiting-hello';
  private user: string | undefined;
  private stream: UserStream | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private queued: string[] = [];
  private blocked = false;
  private corked = false;
  private readonly degradedBy = new Map<'stream' | 'node', string>();
  private shownState: 'ok' | 'degraded' = 'ok';
  private lastAckProgressAt = Date.now();
  private readonly inbound: TokenBucket;
  private readonly log: Logger;

  constructor(
    private readonly ws: WebSocket,
    private readonly options: ClientConnectionOptions,
  ) {
    this.log = options.logger.child({ session: this.session });
    this.inbound = new TokenBucket(options.config.frameRatePerSec, options.config.frameBurst, Date.now());
    this.helloTimer = setTimeout(() => this.close(CloseCode.unauthenticated, 'hello timeout'), options.config.helloTimeoutMs);
    ws.on('message', (data, isBinary) => this.onMessage(data.toString(), isBinary));
    ws.on('pong', () => {
      this.awaitingPong = false;
    });
    ws.on('close', (code) => this.onClosed(code));
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

  // Subscriber -------------------------------------------------------------------------------

  send(frame: string): void {
    if (this.state === 'closed') return;
    const socket = this.options.socket;
    if (socket && !this.corked) {
      // A burst of msg frames leaves in one write (one syscall, fewer TCP segments).
      this.corked = true;
      socket.cork();
      process.nextTick(() => {
        this.corked = false;
        socket.uncork();
      });
    }
    const highWater = this.options.config.sendBufferHighWaterBytes;
    this.ws.send(frame, (error) => {
      if (error || !this.blocked) return;
      if (this.ws.bufferedAmount < highWater / 2) {
        this.blocked = false;
        this.stream?.resume(this);
      }
    });
    if (this.ws.bufferedAmount >= highWater) this.blocked = true;
  }

  writable(): boolean {
    return this.state === 'open' && !this.blocked;
  }

  /** The user's stream paused or resumed delivery (see `nodeStatus` for the node's own causes). */
  status(state: 'ok' | 'degraded', reason?: string): void {
    this.setDegraded('stream', state === 'degraded' ? (reason ?? 'degraded') : undefined);
  }

  /** The node paused delivery (breaker open, broker blocked) for `reason`, or resumed it (undefined). */
  nodeStatus(reason: string | undefined): void {
    this.setDegraded('node', reason);
  }

  private setDegraded(source: 'stream' | 'node', reason: string | undefined): void {
    if (reason === undefined) this.degradedBy.delete(source);
    else this.degradedBy.set(source, reason);
    if (this.state === 'open') this.showStatus();
  }

  /** Sends `status` when the combined state changes: degraded while any cause holds, ok when none does. */
  private showStatus(): void {
    const reason = this.degradedBy.values().next().value;
    const state = reason === undefined ? 'ok' : 'degraded';
    if (state === this.shownState) return;
    this.shownState = state;
    this.sendFrame(reason === undefined ? { type: 'status', state } : { type: 'status', state, reason: reason.slice(0, 200) });
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
    if (this.state !== 'closed') this.ws.send(encodeFrame(frame));
  }

  private error(code: string, message: string, seq?: number): void {
    this.sendFrame(seq === undefined ? { type: 'error', code, message } : { type: 'error', code, message, seq });
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
    if (charge && !progress && !this.inbound.take(Date.now())) {
      this.options.events?.emit('refused', 'frame-rate');
      return this.close(CloseCode.policyViolation, 'rate limit: too many frames');
    }
    if (this.state === 'awaiting-hello') {
      if (frame.type !== 'hello') return this.close(CloseCode.policyViolation, 'expected hello first');
      void this.onHello(frame);
      return;
    }
    if (this.state === 'attaching') {
      if (frame.type === 'ping') return this.sendFrame(frame.id === undefined ? { type: 'pong' } : { type: 'pong', id: frame.id });
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
        if (outcome === 'ok') this.lastAckProgressAt = Date.now();
        if (outcome === 'unknown') this.error(ErrorFrameCode.unknownSeq, `ack for seq ${frame.seq}, which was not sent on this connection`, frame.seq);
        return;
      }
      case 'nack': {
        const outcome = stream?.nack(this, frame.seq, frame.requeue);
        if (outcome === 'unknown') this.error(ErrorFrameCode.unknownSeq, `nack for seq ${frame.seq}, which is not unacked on this connection`, frame.seq);
        if (outcome === 'dead-lettered' && frame.requeue) {
          this.error(ErrorFrameCode.nackLimit, `seq ${frame.seq} was nacked too often and is dead-lettered`, frame.seq);
        }
        return;
      }
      case 'refresh':
        return this.onRefresh(frame.token);
      case 'ping':
        return this.sendFrame(frame.id === undefined ? { type: 'pong' } : { type: 'pong', id: frame.id });
    }
  }

  private authenticate(token: string | undefined): AuthResult {
    if (token !== undefined) return verifyToken(token, this.options.config.jwt);
    if (this.options.headerIdentity) {
      const identity = this.options.headerIdentity;
      if (identity.expiresAt !== undefined && identity.expiresAt <= Date.now()) {
        return { ok: false, failure: 'expired', reason: 'token expired' };
      }
      return { ok: true, identity };
    }
    return { ok: false, failure: 'unauthenticated', reason: 'no token: send one in hello or in the Authorization header' };
  }

  /** Ends a hello that could not attach: 1013 with `why` (the client retries), or 1011 without. */
  private refuseAttach(detail: string, why: 'unavailable' | 'attach-timeout' | undefined): void {
    this.options.events?.emit('handshake', 'unavailable');
    this.log.warn({ user: this.user, err: detail }, 'could not attach the connection');
    if (why) return this.close(CloseCode.overloaded, retryAfterReason(this.options.retryAfterMs(), why));
    this.close(CloseCode.internalError, 'internal error');
  }

  private closeForAuth(result: Exclude<AuthResult, { ok: true }>): void {
    this.options.events?.emit('handshake', result.failure);
    const code =
      result.failure === 'expired' ? CloseCode.tokenExpired : result.failure === 'forbidden' ? CloseCode.forbidden : CloseCode.unauthenticated;
    this.close(code, result.reason);
  }

  private async onHello(hello: HelloFrame): Promise<void> {
    this.settleHello();
    const auth = this.authenticate(hello.token);
    if (!auth.ok) return this.closeForAuth(auth);
    const { config } = this.options;
    this.user = auth.identity.user;
    this.window = Math.min(hello.window ?? config.windowDefault, config.windowMax);
    this.state = 'attaching';
    this.armExpiry(auth.identity.expiresAt);
    const attaching = this.options.registry.attach(this.user, this, hello.resume);
    // A stream that takes too long (RabbitMQ slow to start the consumer) does not hold the
    // client: it gets 1013 and retries, and the attach that goes on meanwhile is undone when it
    // completes.
    if (!(await settledWithin(attaching, config.attachTimeoutMs))) {
      attaching.then(
        ({ stream }) => stream.detach(this),
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
    this.log.debug({ user: this.user, lastSeq: result.lastSeq, resumed: result.resumed, recovered: result.recovered }, 'connection open');
    this.state = 'open';
    this.lastAckProgressAt = Date.now();
    const streamReason = stream.degradedReason;
    if (streamReason !== undefined) this.degradedBy.set('stream', streamReason);
    const nodeReason = this.options.nodeDegraded?.();
    if (nodeReason !== undefined) this.degradedBy.set('node', nodeReason);
    this.showStatus();
    stream.resume(this);
    const queued = this.queued;
    this.queued = [];
    for (const text of queued) this.onMessage(text, false, false);
  }

  private onRefresh(token: string): void {
    const auth = verifyToken(token, this.options.config.jwt);
    if (!auth.ok) return this.closeForAuth(auth);
    if (auth.identity.user !== this.user) return this.close(CloseCode.forbidden, 'refresh token is for another user');
    this.armExpiry(auth.identity.expiresAt);
  }

  private armExpiry(expiresAt: number | undefined): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (expiresAt === undefined) return;
    const delay = expiresAt - Date.now();
    if (delay <= 0) return this.close(CloseCode.tokenExpired, 'token expired');
    this.expiryTimer = setTimeout(() => this.armExpiry(expiresAt), Math.min(delay, MAX_TIMER_MS));
  }

  /**
   * Closes a client that holds unacked messages and made no ack progress for `ackTimeoutMs`
   * (kept well below RabbitMQ's consumer timeout), with a resumable code: its messages go back
   * to RabbitMQ in order and it resumes when it reconnects.
   */
  checkAckProgress(now: number): void {
    if (this.state !== 'open' || !this.stream) return;
    if (this.stream.unacked(this) === 0) {
      this.lastAckProgressAt = now;
      return;
    }
    if (now - this.lastAckProgressAt < this.options.config.ackTimeoutMs) return;
    this.options.events?.emit('refused', 'ack-timeout');
    this.log.info({ user: this.user }, 'no ack progress; closing');
    this.close(CloseCode.overloaded, retryAfterReason(this.options.retryAfterMs(), 'ack-timeout'));
  }

  private settleHello(): void {
    if (this.helloTimer === undefined) return;
    clearTimeout(this.helloTimer);
    this.helloTimer = undefined;
    this.options.onHelloSettled();
  }

  // Lifecycle ---------------------------------------------------------------------------------

  /** Sends a close frame; the socket is terminated if the client does not answer in time. */
  close(code: number, reason: string): void {
    if (this.state === 'closed') return;
    this.options.events?.emit('connection-closed', code);
    this.finish();
    this.ws.close(code, reason.slice(0, 123));
    setTimeout(() => this.ws.terminate(), 5_000).unref();
  }

  /** A WebSocket ping; the server's sweep terminates the connection if no pong came by the next one. */
  ping(): void {
    if (this.state !== 'closed') this.ws.ping();
  }

  /** Drops a connection that stopped answering pings. */
  terminate(): void {
    this.finish();
    this.ws.terminate();
  }

  private onClosed(code: number): void {
    if (this.state !== 'closed') this.options.events?.emit('connection-closed', code);
    this.finish();
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.settleHello();
    clearTimeout(this.expiryTimer);
    this.stream?.detach(this);
    this.options.onClose(this);
  }
}
