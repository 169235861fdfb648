/**
 * The inbox-relay client: one logical stream of a user's messages over a succession of
 * WebSocket connections.
 *
 * Guarantees:
 * - Consumers get messages one at a time, in seq order; within an epoch a seq is handed to them
 *   at most once, unless a consumer failed it and the nack policy requeued it.
 * - A message is acked only after every consumer finished with it (at-least-once processing);
 *   a failed one is nacked per the nack policy, never dropped silently.
 * - After a recoverable close the client reconnects with full-jitter backoff (at least the
 *   relay's retry-after on 1013) and resumes from its position; after 1008/1009/4003 it closes
 *   with an error; after 4001/4008 it asks the token provider for a new token first.
 * - A refused token (4001/4008) that retrying cannot fix ends the client with an error
 *   (`connect()` rejects, `error` fires): at once for a fixed token, after one more token from
 *   a provider that is refused again before any `welcome`.
 * - A connection silent for two heartbeats is abandoned and replaced; `close()` leaves no timer or socket behind.
 */
import { CloseCode } from '../protocol/close-codes.js';
import type { ErrorFrame, ResetFrame, WelcomeFrame } from '../protocol/frame-types.js';
import { Backoff } from './backoff.js';
import { canTransition, type ClientState } from './client-state.js';
import type { TimerHandle } from './clock.js';
import { AuthRefusals } from './auth-refusals.js';
import { decideAfterClose } from './close-decision.js';
import { Connection } from './connection.js';
import { currentConnectionListener, type CurrentConnectionHandlers } from './current-connection.js';
import { deferred, type Deferred } from './deferred.js';
import { DeliveryFlow, type MutableStats } from './delivery-flow.js';
import { ClientErrorCode, InboxClientError } from './errors.js';
import type { ClientStats, InboxClientEvents, OpenEvent } from './events.js';
import { TypedEmitter } from './emitter.js';
import { helloFrame, readWelcome } from './handshake.js';
import type { InboxMessage } from './message.js';
import { MessageIterator } from './message-iterator.js';
import { resolveOptions, type InboxClientOptions, type ResolvedOptions } from './options.js';
import type { Position } from './position-store.js';
import { PositionTracker } from './position-tracker.js';
import { jwtSubject } from './token.js';
import { TokenSession } from './token-session.js';
import { resolveWebSocket, type WebSocketConstructorLike } from './transport.js';

/** Handles one message. Resolve when it is processed; throw (reject) to have the nack policy decide. */
export type MessageHandler = (message: InboxMessage) => unknown;

/**
 * A client of one user's inbox stream (see the module comment for what it guarantees). Create
 * it, add consumers, then connect:
 *
 * ```ts
 * const client = new InboxClient({ url: 'wss://relay.example', token: () => fetchToken() });
 * client.on('message', async (message) => save(message.data));
 * client.on('error', (error) => log(error.code, error.message));
 * await client.connect();
 * ```
 *
 * or `for await (const message of client) { ... }` after `connect()`.
 */
export class InboxClient implements AsyncIterable<InboxMessage> {
  readonly #options: ResolvedOptions;
  readonly #events = new TypedEmitter<InboxClientEvents>();
  readonly #tracker: PositionTracker;
  readonly #flow: DeliveryFlow;
  readonly #backoff: Backoff;
  readonly #tokens: TokenSession;
  readonly #authRefusals: AuthRefusals;
  readonly #iterators = new Set<MessageIterator>();
  readonly #stats: MutableStats = {
    received: 0,
    processed: 0,
    duplicates: 0,
    outOfSequence: 0,
    requeued: 0,
    deadLettered: 0,
    acksSent: 0,
    nacksSent: 0,
    connections: 0,
  };
  #state: ClientState = 'idle';
  #webSocket: WebSocketConstructorLike | undefined;
  #connection: Connection | undefined;
  /** The connection that received a `reset` (so its welcome's new epoch is not reported twice). */
  #resetOn: Connection | undefined;
  #reconnectTimer: TimerHandle | undefined;
  #opened: Deferred<OpenEvent> | undefined;
  #closeRequested = false;
  #closing: Promise<void> | undefined;
  #failure: InboxClientError | undefined;
  readonly #handlers: CurrentConnectionHandlers = {
    welcome: (connection, frame) => this.#onWelcome(connection, frame),
    message: (connection, frame) => this.#flow.receive(connection, frame),
    reset: (connection, frame) => this.#onReset(connection, frame),
    status: (frame) => this.#events.emit('status', { state: frame.state, reason: frame.reason }),
    serverError: (connection, frame) => this.#onServerError(connection, frame),
    protocolError: (error) => this.#events.emit('error', error),
    closed: (connection, code, reason) => this.#onClosed(connection, code, reason),
  };

  /** Validates the options (throws `RELAY_ERR_INVALID_OPTION`); does not connect yet. */
  constructor(options: InboxClientOptions) {
    this.#options = resolveOptions(options);
    this.#backoff = new Backoff(
      { initialDelayMs: this.#options.reconnectInitialDelayMs, maxDelayMs: this.#options.reconnectMaxDelayMs },
      this.#options.random,
    );
    this.#authRefusals = new AuthRefusals(this.#options.staticToken);
    this.#tokens = new TokenSession({
      provider: this.#options.tokenProvider,
      clock: this.#options.clock,
      refreshLeadMs: this.#options.tokenRefreshLeadMs,
      onRefreshError: (cause) => this.#emitError(ClientErrorCode.tokenProvider, 'the token provider failed to refresh', cause),
    });
    this.#tracker = new PositionTracker(this.#options.positionStore, (cause) =>
      this.#emitError(ClientErrorCode.positionStore, 'saving the position failed', cause),
    );
    this.#flow = new DeliveryFlow({
      tracker: this.#tracker,
      policy: this.#options.nackPolicy,
      stats: this.#stats,
      events: this.#events,
      isCurrent: (connection) => connection === this.#connection,
    });
  }

  get state(): ClientState {
    return this.#state;
  }

  /** The highest processed seq and its epoch; undefined before the first welcome (or stored position). */
  get position(): Position | undefined {
    return this.#tracker.position;
  }

  /** A snapshot of the counters. */
  stats(): ClientStats {
    return { ...this.#stats };
  }

  /**
   * `message`: adds a consumer. Handlers run one message at a time, in seq order, awaited in
   * the order they were added; the message is acked once all resolved. A throw hands it to
   * the nack policy. Other events: plain listeners. Returns a function that removes the listener.
   */
  // The promise-returning overload tells linters (no-misused-promises) that async handlers are meant:
  // the client awaits them.
  on(event: 'message', handler: (message: InboxMessage) => Promise<unknown>): () => void;
  on(event: 'message', handler: MessageHandler): () => void;
  on<K extends keyof InboxClientEvents>(event: K, listener: (payload: InboxClientEvents[K]) => void): () => void;
  on(event: string, listener: (payload: never) => unknown): () => void {
    if (event === 'message') return this.#flow.addConsumer(listener as MessageHandler);
    return this.#events.on(event as keyof InboxClientEvents, listener as (payload: unknown) => unknown);
  }

  /**
   * Starts connecting (idempotent). Resolves with the first `welcome`; the client keeps
   * reconnecting until then. Rejects if the client closes first (terminal close code, `close()`).
   */
  connect(): Promise<OpenEvent> {
    if (this.#opened) return this.#opened.promise;
    const opened = deferred<OpenEvent>();
    this.#opened = opened;
    if (this.#state === 'closed') {
      opened.reject(this.#failure ?? this.#closedError());
    } else {
      this.#start().catch((cause: unknown) => this.#failUnexpectedly(cause));
    }
    return opened.promise;
  }

  /**
   * Closes the client (idempotent): stops taking messages, ends every iterator (a message a
   * for-await loop holds is released unacked and comes again next session), waits up to
   * `drainTimeoutMs` for the handler running, flushes acks, and closes the socket with 1000.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  /** Iterates over messages until the client closes; see {@link MessageIterator} for ack semantics. */
  [Symbol.asyncIterator](): AsyncIterator<InboxMessage, undefined> {
    const iterator: MessageIterator = new MessageIterator(
      (consumer) => this.#flow.addConsumer(consumer),
      () => this.#iterators.delete(iterator),
    );
    if (this.#state === 'closed') iterator.end(this.#failure);
    else this.#iterators.add(iterator);
    return iterator;
  }

  async #start(): Promise<void> {
    this.#setState('connecting');
    try {
      this.#webSocket = await resolveWebSocket(this.#options.webSocket);
      await this.#tracker.load();
    } catch (cause) {
      if (this.#closeRequested) return;
      const error =
        cause instanceof InboxClientError
          ? cause
          : new InboxClientError(ClientErrorCode.positionStore, 'loading the position failed', { cause, temporary: false });
      this.#events.emit('error', error);
      this.#finish(error);
      return;
    }
    if (!this.#closeRequested) await this.#openConnection();
  }

  async #openConnection(): Promise<void> {
    this.#setState('connecting');
    let token: string;
    try {
      token = await this.#tokens.forConnection();
    } catch (cause) {
      if (this.#closeRequested) return;
      this.#emitError(ClientErrorCode.tokenProvider, 'the token provider failed', cause);
      this.#scheduleReconnect(undefined);
      return;
    }
    if (this.#closeRequested || !this.#webSocket) return;
    this.#tokens.use(token);
    const hello = helloFrame(token, this.#tracker.resumeFor(jwtSubject(token)), this.#options.window, this.#options.device);
    const { url, clock, connectTimeoutMs, ackDelayMs, ackBatch } = this.#options;
    try {
      // Read through a closure: the constructor may report a close before it returns.
      let connection: Connection | undefined = undefined;
      const listener = currentConnectionListener(
        () => connection,
        () => this.#connection,
        this.#handlers,
      );
      connection = new Connection({
        url,
        webSocket: this.#webSocket,
        hello,
        clock,
        connectTimeoutMs,
        ackDelayMs,
        ackBatch,
        counters: this.#stats,
        listener,
      });
      if (!connection.isClosed) this.#connection = connection;
    } catch (cause) {
      this.#emitError(ClientErrorCode.noWebSocket, 'opening the WebSocket failed', cause);
      this.#scheduleReconnect(undefined);
    }
  }

  #onWelcome(connection: Connection, frame: WelcomeFrame): void {
    const adoption = this.#tracker.adopt(frame.user, frame.epoch, frame.lastSeq);
    const report = readWelcome(frame, adoption, this.#resetOn === connection);
    this.#backoff.reset();
    this.#authRefusals.accepted();
    this.#tokens.reason = 'connect';
    this.#stats.connections += 1;
    if (report.reset) this.#events.emit('reset', report.reset);
    if (report.gap) this.#events.emit('gap', report.gap);
    this.#setState('open');
    this.#tokens.startRefreshing((token) => connection === this.#connection && connection.refresh(token));
    if (this.#opened && !this.#opened.settled) this.#opened.resolve(report.open);
    this.#events.emit('open', report.open);
  }

  #onReset(connection: Connection, frame: ResetFrame): void {
    const previous = this.#tracker.reset(frame.epoch, frame.lastSeq);
    this.#resetOn = connection;
    this.#flow.reset(connection, frame.epoch);
    this.#events.emit('reset', { epoch: frame.epoch, lastSeq: frame.lastSeq, reason: frame.reason, previous });
  }

  #onServerError(connection: Connection, frame: ErrorFrame): void {
    const error = new InboxClientError(frame.code, frame.message, { fromServer: true, temporary: true });
    this.#events.emit('error', error);
    this.#flow.serverError(connection, frame.code, error);
  }

  #onClosed(connection: Connection | undefined, code: number, reason: string): void {
    this.#connection = undefined;
    this.#resetOn = undefined;
    this.#tokens.stopRefreshing();
    if (connection) this.#flow.connectionGone(connection);
    if (this.#closeRequested) return;
    const action = decideAfterClose(code, reason);
    const refusedFinally = action.kind === 'reconnect' && action.tokenReason !== 'connect' && this.#authRefusals.refused();
    if (refusedFinally) {
      this.#giveUp(code, reason, refusedFinally);
      return;
    }
    if (action.kind === 'reconnect') {
      this.#tokens.reason = action.tokenReason;
      const delayMs = this.#scheduleReconnect(action.retryAfterMs);
      this.#events.emit('disconnect', { code, reason, willReconnect: true, delayMs });
      return;
    }
    if (action.kind === 'stop') {
      this.#events.emit('disconnect', { code, reason, willReconnect: false, delayMs: undefined });
      this.#finish(undefined);
      return;
    }
    this.#giveUp(code, reason, undefined);
  }

  /** Ends the client after a close it will not recover from: `error` fires and `connect()` rejects. */
  #giveUp(code: number, reason: string, why: string | undefined): void {
    this.#events.emit('disconnect', { code, reason, willReconnect: false, delayMs: undefined });
    const error = new InboxClientError(
      ClientErrorCode.terminalClose,
      `the relay closed the connection with ${code}${reason ? ` (${reason})` : ''}${why ? `; ${why}` : ''}`,
      { closeCode: code, temporary: false },
    );
    this.#events.emit('error', error);
    this.#finish(error);
  }

  #scheduleReconnect(retryAfterMs: number | undefined): number {
    const delayMs = this.#backoff.next(retryAfterMs);
    this.#setState('reconnecting');
    this.#reconnectTimer = this.#options.clock.setTimeout(() => {
      this.#reconnectTimer = undefined;
      this.#openConnection().catch((cause: unknown) => this.#failUnexpectedly(cause));
    }, delayMs);
    return delayMs;
  }

  async #shutdown(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#closeRequested = true;
    this.#reconnectTimer?.cancel();
    this.#reconnectTimer = undefined;
    this.#tokens.stopRefreshing();
    this.#flow.stop();
    // A for-await loop may be the one awaiting close(): its message is released, not waited for.
    for (const iterator of [...this.#iterators]) iterator.end();
    await this.#withinDrainTimeout(this.#flow.whenIdle());
    const connection = this.#connection;
    if (connection) await connection.close(CloseCode.normal, 'client closing');
    this.#connection = undefined;
    await this.#tracker.flush();
    this.#finish(undefined);
  }

  #withinDrainTimeout(work: Promise<void>): Promise<void> {
    return new Promise((resolve) => {
      const timer = this.#options.clock.setTimeout(resolve, this.#options.drainTimeoutMs);
      const done = (): void => {
        timer.cancel();
        resolve();
      };
      // The drain is over either way: a handler's failure was already handed to the nack policy.
      work.then(done, done);
    });
  }

  #finish(error: InboxClientError | undefined): void {
    if (this.#state === 'closed') return;
    this.#closeRequested = true;
    this.#failure = error;
    this.#reconnectTimer?.cancel();
    this.#reconnectTimer = undefined;
    this.#tokens.stopRefreshing();
    this.#flow.stop();
    this.#setState('closed');
    for (const iterator of [...this.#iterators]) iterator.end(error);
    if (this.#opened && !this.#opened.settled) this.#opened.reject(error ?? this.#closedError());
  }

  #closedError(): InboxClientError {
    return new InboxClientError(ClientErrorCode.clientClosed, 'the client is closed', { temporary: false });
  }

  #setState(to: ClientState): void {
    const from = this.#state;
    if (from === to) return;
    if (!canTransition(from, to)) throw new Error(`inbox-relay client: invalid transition ${from} -> ${to}`);
    this.#state = to;
    this.#events.emit('state', { from, to });
  }

  // The async steps catch their own failures, so only a bug in the client gets here: give up with
  // an error (connect() rejects, iterators end) rather than leave the caller waiting forever.
  #failUnexpectedly(cause: unknown): void {
    if (this.#state === 'closed') return;
    const error =
      cause instanceof InboxClientError
        ? cause
        : new InboxClientError(ClientErrorCode.internal, 'the client failed unexpectedly', { cause, temporary: false });
    this.#events.emit('error', error);
    this.#finish(error);
  }

  #emitError(code: string, message: string, cause?: unknown): void {
    this.#events.emit('error', new InboxClientError(code, message, { cause, temporary: true }));
  }
}
