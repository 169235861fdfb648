/**
 * The WebSocket edge of the relay: the HTTP listener and its upgrades (checks, admission,
 * shedding with 1013), the set of open connections, and the two sweeps over them (heartbeat,
 * ack progress), and the per-user connection cap (user-connection-cap.ts), enforced through the
 * registry's attach gate so that a connection past it never joins its user's stream.
 *
 * Before the upgrade, sockets are bounded (upgrade-limits.ts): at most MAX_PENDING_UPGRADES
 * without a complete request (a new one past it is closed at once), each closed with HTTP 408 when
 * it has not sent one within UPGRADE_TIMEOUT_MS, and every refusal closes its socket.
 *
 * Guarantees: after `stopAccepting()` every upgrade is refused with HTTP 503 and the sweeps are
 * stopped; `close()` (idempotent) cuts the sockets still open and closes the listener. The
 * gateway owns its listener, its WebSocket server, its timers and the lag monitor; it never
 * closes the registry or the dependencies it was handed.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import type { RelayConfig } from '../config.js';
import { background } from '../background.js';
import { errorMessage } from '../errors.js';
import type { RelayEvents } from '../events.js';
import type { Logger } from '../log.js';
import { CloseCode, retryAfterReason } from '../protocol/close-codes.js';
import { SUBPROTOCOL } from '../protocol/frames.js';
import type { StreamRegistry } from '../delivery/stream-registry.js';
import type { Subscriber } from '../delivery/user-stream.js';
import { AdmissionControl, jitteredRetryAfter, type AdmissionReason } from '../overload/admission.js';
import { AUTH_FAILURES_REFUSAL, AuthFailureLimiter, type AuthGate } from '../overload/auth-failures.js';
import { LagMonitor } from '../overload/lag-monitor.js';
import { ackSweepIntervalMs } from './ack-progress.js';
import { ClientConnection } from './client-connection.js';
import type { BackgroundClock, TimerHandle } from '../delivery/background-clock.js';
import { closeReason } from './close-reason.js';
import type { TokenKeys } from './token-keys.js';
import type { PresenceSink } from '../presence/presence-tracker.js';
import { checkUpgrade, refuseUpgrade, type UpgradeCheck } from './upgrade.js';
import {
  MAX_SOCKETS_REFUSAL,
  PENDING_UPGRADES_REFUSAL,
  PendingUpgrades,
  UPGRADE_TIMEOUT_REFUSAL,
  checkIntervalMs,
  maxSockets,
} from './upgrade-limits.js';
import { USER_CAP_CLOSE, USER_CAP_REFUSAL, UserConnectionCap } from './user-connection-cap.js';

/**
 * The listen backlog (the kernel caps it at net.core.somaxconn). Node's default, 511, is too
 * short for a reconnect storm: past it the kernel drops SYNs, and a client only retries after
 * 1, 3, 7, 15... s. Accepted, a client that cannot be served now gets 1013 and a retry-after.
 */
const LISTEN_BACKLOG = 4_096;

/** How long a shed client has to answer its 1013 close frame before its socket is cut. */
const SHED_CLOSE_MS = 5_000;

/** Listens on `port` (0: any) with the relay's backlog; resolves with the port bound. */
export function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** Closes a listener; resolves once it stopped (also when it was not listening). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export interface GatewayOptions {
  config: RelayConfig;
  registry: StreamRegistry;
  events: RelayEvents;
  logger: Logger;
  clock: BackgroundClock;
  /** The name of an open breaker, if any: new connections are shed while one is. */
  unavailable: () => string | undefined;
  /** A node-wide reason delivery is paused, told to each connection after its welcome. */
  nodeDegraded: () => string | undefined;
  /** The keys that verify tokens, at the upgrade and in every connection. */
  tokenKeys: TokenKeys;
  /** Told of every connection welcomed and closed (presence); none: presence is off. */
  presence?: PresenceSink;
}

export class Gateway {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly connections = new Set<ClientConnection>();
  private readonly lag = new LagMonitor();
  private readonly admission: AdmissionControl;
  private readonly sweeps: TimerHandle[];
  private readonly userCap: UserConnectionCap<ClientConnection>;
  private readonly pendingUpgrades: PendingUpgrades<Socket>;
  private readonly authFailures: AuthFailureLimiter;
  private pendingHellos = 0;
  private accepting = true;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: GatewayOptions) {
    const { config, clock } = options;
    this.admission = new AdmissionControl(config.admission, clock.now());
    this.userCap = new UserConnectionCap(config.maxConnectionsPerUser);
    this.pendingUpgrades = new PendingUpgrades(config.admission.maxPendingUpgrades);
    this.authFailures = new AuthFailureLimiter(config.authFailureRatePerAddress);
    options.registry.setAttachGate((user, sub) => this.admitToUser(user, sub));
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: config.maxPayloadBytes,
      perMessageDeflate: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    // Node's request deadlines cover a request from the moment its socket is accepted, upgrade
    // requests included, and end with a clientError (onClientError); an upgraded socket is no
    // longer watched.
    const deadline = config.upgradeTimeoutMs;
    this.http = createServer(
      { headersTimeout: deadline, requestTimeout: deadline, connectionsCheckingInterval: checkIntervalMs(deadline) },
      (_request: IncomingMessage, response: ServerResponse) => {
        // Connection: close, so that a socket that will not upgrade does not stay as a pending one.
        response.writeHead(426, { 'Content-Type': 'text/plain; charset=utf-8', Connection: 'close' });
        response.end('this endpoint speaks WebSocket: GET /v1/stream with subprotocol inbox-relay.v1\n');
      },
    );
    this.http.maxConnections = maxSockets(config.admission);
    this.http.on('drop', () => options.events.emit('refused', MAX_SOCKETS_REFUSAL));
    this.http.on('connection', (socket: Socket) => this.onConnection(socket));
    this.http.on('clientError', (error: NodeJS.ErrnoException, socket: Duplex) => this.onClientError(error, socket));
    this.http.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => this.onUpgrade(request, socket, head));
    this.sweeps = [
      clock.setInterval(() => this.heartbeat(), config.heartbeatMs),
      clock.setInterval(() => this.checkAckProgress(), ackSweepIntervalMs(config.ackTimeoutMs)),
    ];
  }

  /** Open client connections. */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Sockets accepted that have not completed their upgrade request. */
  get pendingUpgradeCount(): number {
    return this.pendingUpgrades.size;
  }

  /** Binds the listener; resolves with the port. */
  listen(): Promise<number> {
    return listen(this.http, this.options.config.port, this.options.config.host);
  }

  /** Tells every connection the node's current degraded reason (or that there is none). */
  tellConnections(): void {
    const reason = this.options.nodeDegraded();
    for (const connection of this.connections) connection.nodeStatus(reason);
  }

  /** From now on upgrades get HTTP 503, and the heartbeat and ack sweeps stop. */
  stopAccepting(): void {
    this.accepting = false;
    for (const sweep of this.sweeps) sweep.cancel();
  }

  /** Sends `code` and `reason` to every open connection (each is cut if it does not answer). */
  closeConnections(code: number, reason: string): void {
    for (const connection of [...this.connections]) connection.close(code, reason);
  }

  /** Cuts every socket still open, then closes the listener. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.stopAccepting();
      // Clients were told to go; one that has not finished the closing handshake by now is cut,
      // or closing the listener would wait for its socket.
      for (const client of this.wss.clients) client.terminate();
      this.http.closeAllConnections();
      await closeServer(this.http);
      this.wss.close();
      this.lag.close();
    })();
    return this.closing;
  }

  /** One heartbeat over every connection (ClientConnection.heartbeat: ping, or cut if silent). */
  private heartbeat(): void {
    for (const connection of [...this.connections]) connection.heartbeat();
  }

  private checkAckProgress(): void {
    const now = this.options.clock.now();
    for (const connection of [...this.connections]) connection.checkAckProgress(now);
  }

  /**
   * A socket was accepted: it counts as a pending upgrade until its upgrade request is complete or
   * it closes. Past MAX_PENDING_UPGRADES it is closed at once: it has sent nothing to answer yet,
   * and closing it costs less than anything else.
   */
  private onConnection(socket: Socket): void {
    if (!this.pendingUpgrades.admit(socket)) {
      this.options.events.emit('refused', PENDING_UPGRADES_REFUSAL);
      socket.destroy();
      return;
    }
    socket.once('close', () => this.pendingUpgrades.settle(socket));
  }

  /**
   * A socket's request failed before it reached a handler: past the deadline (408, counted as a
   * refusal), or not HTTP. Node leaves answering and closing the socket to this listener.
   */
  private onClientError(error: NodeJS.ErrnoException, socket: Duplex): void {
    if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      this.options.events.emit('refused', UPGRADE_TIMEOUT_REFUSAL);
      return refuseUpgrade(socket, 408, `no complete request within ${this.options.config.upgradeTimeoutMs} ms`);
    }
    if (error.code === 'HPE_HEADER_OVERFLOW') return refuseUpgrade(socket, 431, 'request headers too large');
    refuseUpgrade(socket, 400, 'bad request');
  }

  private onUpgrade(request: IncomingMessage, socket: Socket, head: Buffer): void {
    this.pendingUpgrades.settle(socket);
    socket.on('error', () => socket.destroy());
    if (!this.accepting) return refuseUpgrade(socket, 503, 'relay is draining; reconnect to another node', { 'Retry-After': '1' });
    const authGate = this.authFailures.gate(socket.remoteAddress, () => this.options.clock.now());
    background(
      checkUpgrade(request, this.options.config, this.options.tokenKeys, authGate).then((check) =>
        this.completeUpgrade(check, authGate, request, socket, head),
      ),
      (error) => {
        this.options.logger.error({ err: errorMessage(error) }, 'upgrade failed');
        socket.destroy();
      },
    );
  }

  /** After the checks (the token's key may have been fetched meanwhile): refuse, or upgrade and admit. */
  private completeUpgrade(check: UpgradeCheck, authGate: AuthGate, request: IncomingMessage, socket: Socket, head: Buffer): void {
    const { config, events } = this.options;
    if (!this.accepting) return refuseUpgrade(socket, 503, 'relay is draining; reconnect to another node', { 'Retry-After': '1' });
    if (!check.ok) {
      events.emit('handshake', check.status === 401 ? 'unauthenticated' : check.status === 403 ? 'forbidden' : 'refused');
      if (check.status === 429) events.emit('refused', AUTH_FAILURES_REFUSAL);
      const headers: Record<string, string> = {};
      if (check.retryAfterMs !== undefined) headers['Retry-After'] = String(Math.max(1, Math.ceil(check.retryAfterMs / 1000)));
      return refuseUpgrade(socket, check.status, check.message, headers);
    }
    this.wss.handleUpgrade(request, socket, head, (ws) => {
      const unavailable = this.options.unavailable();
      if (unavailable !== undefined)
        return this.shed(ws, 'dependency-unavailable', jitteredRetryAfter('dependency-unavailable'), `${unavailable}-unavailable`);
      const load = { connections: this.connections.size, pendingHellos: this.pendingHellos, eventLoopLagMs: this.lag.lagMs };
      const admitted = this.admission.admit(load, this.options.clock.now());
      if (!admitted.ok) return this.shed(ws, admitted.reason, admitted.retryAfterMs, admitted.reason);
      this.pendingHellos += 1;
      const connection = new ClientConnection(ws, {
        config,
        registry: this.options.registry,
        logger: this.options.logger,
        headerIdentity: check.identity,
        tokenKeys: this.options.tokenKeys,
        authGate,
        events,
        retryAfterMs: () => jitteredRetryAfter('dependency-unavailable'),
        onHelloSettled: () => {
          this.pendingHellos -= 1;
        },
        nodeDegraded: this.options.nodeDegraded,
        socket,
        clock: this.options.clock,
        ...(this.options.presence ? { presence: this.options.presence } : {}),
        onClose: (closed) => {
          this.connections.delete(closed);
          if (closed.userId !== undefined) this.userCap.release(closed.userId, closed);
        },
      });
      this.connections.add(connection);
    });
  }

  /**
   * The attach gate: a connection of this gateway takes one of its user's slots, or is closed
   * with 1008 (a policy the client must change, not a load it should wait out: the SDK stops).
   * Anything else attaching (not a connection of this gateway) is not counted.
   */
  private admitToUser(user: string, sub: Subscriber): boolean {
    if (!(sub instanceof ClientConnection) || !this.connections.has(sub)) return true;
    if (this.userCap.acquire(user, sub)) return true;
    const { events, logger } = this.options;
    events.emit('handshake', 'refused');
    events.emit('refused', USER_CAP_REFUSAL);
    logger.info({ user, session: sub.session, connections: this.userCap.count(user) }, 'too many connections for this user; closing');
    sub.close(USER_CAP_CLOSE.code, USER_CAP_CLOSE.reason);
    return false;
  }

  /** Refuses an accepted WebSocket with 1013 and a jittered retry-after. */
  private shed(ws: WebSocket, reason: AdmissionReason, retryAfterMs: number, detail: string): void {
    this.options.events.emit('refused', reason);
    ws.on('error', () => undefined);
    ws.close(CloseCode.overloaded, closeReason(retryAfterReason(retryAfterMs, detail)));
    this.options.clock.setTimeout(() => ws.terminate(), SHED_CLOSE_MS);
  }
}
