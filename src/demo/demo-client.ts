/**
 * One user's application in the demo: an {@link InboxClient} with a position store that
 * outlives it, so the demo can cut its connection (the SDK reconnects by itself) or stop the
 * client and start a new one that resumes where the old one stopped.
 */
import { WebSocket } from 'ws';
import {
  InboxClient,
  MemoryPositionStore,
  type ClientStats,
  type InboxMessage,
  type TokenProvider,
  type WebSocketConstructorLike,
} from '../client/index.js';
import type { Narrator } from './narrator.js';
import { within } from './wait.js';

/** Reconnect delays are capped low so the demo's relay restarts take seconds, not half a minute. */
const RECONNECT_MAX_DELAY_MS = 2_000;

const CLOSE_MEANING: Record<number, string> = {
  1001: 'relay going away',
  1006: 'connection dropped',
  1011: 'relay error',
  1012: 'relay restarting',
  1013: 'relay overloaded',
};

export interface DemoClientOptions {
  readonly name: string;
  readonly user: string;
  /** The relay, `ws://host:port`. */
  readonly url: string;
  readonly token: TokenProvider;
  readonly narrator: Narrator;
  /** Called for each message the handler processes. */
  readonly onMessage: (message: InboxMessage) => void;
  /** Longest `start()` waits for the first welcome. */
  readonly startTimeoutMs: number;
}

type Counters = { -readonly [K in keyof ClientStats]: ClientStats[K] };

/** A user's client that can be cut, restarted and closed by the scenario. */
export class DemoClient {
  private readonly store = new MemoryPositionStore();
  /** Counters of the clients this one replaced. */
  private readonly replaced: Counters[] = [];
  private client: InboxClient;
  private socket: WebSocket | undefined;
  private welcomed = false;
  private connected = false;
  /** Connection attempts that failed since the last welcome. */
  private failedAttempts = 0;

  constructor(private readonly options: DemoClientOptions) {
    this.client = this.create();
  }

  get name(): string {
    return this.options.name;
  }

  /** Between a welcome and the next disconnect. */
  get isOpen(): boolean {
    return this.connected;
  }

  /** Connects; resolves at the first welcome, rejects after `startTimeoutMs` without one. */
  async start(): Promise<void> {
    await within(
      this.client.connect(),
      this.options.startTimeoutMs,
      `${this.name}: no welcome from the relay within ${this.options.startTimeoutMs} ms`,
    );
  }

  /** Drops the current socket without a close handshake, as a network failure would. */
  cut(): boolean {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
    this.say('connection cut (socket terminated)');
    this.socket.terminate();
    return true;
  }

  /** Closes this client and starts a new one with the same position store. */
  async restart(): Promise<void> {
    await this.close();
    this.replaced.push({ ...this.client.stats() });
    this.say(`client stopped at seq ${this.store.load()?.lastSeq ?? 0}; starting a new one with the same position store`);
    this.client = this.create();
    await this.start();
  }

  /** Counters of this client and the ones it replaced, summed. */
  stats(): ClientStats {
    const sum: Counters = { ...this.client.stats() };
    for (const old of this.replaced) for (const key of Object.keys(sum) as (keyof Counters)[]) sum[key] += old[key];
    return sum;
  }

  /** Closes the client (flushing its acks). Idempotent. */
  async close(): Promise<void> {
    await this.client.close();
    this.connected = false;
  }

  private create(): InboxClient {
    const remember = (socket: WebSocket): void => {
      this.socket = socket;
    };
    // The SDK takes any WebSocket class: this one keeps the socket so the demo can cut it.
    const Tracked = class extends WebSocket {
      constructor(url: string, protocols: string[]) {
        super(url, protocols);
        remember(this);
      }
    } satisfies WebSocketConstructorLike;
    const client = new InboxClient({
      url: this.options.url,
      token: this.options.token,
      webSocket: Tracked,
      positionStore: this.store,
      reconnectMaxDelayMs: RECONNECT_MAX_DELAY_MS,
    });
    client.on('message', (message) => {
      this.options.onMessage(message);
      this.options.narrator.delivered(this.name, message.seq, message.redelivered);
    });
    client.on('open', (open) => {
      const attempts =
        this.failedAttempts > 0 ? ` (${this.failedAttempts} failed attempt${this.failedAttempts === 1 ? '' : 's'} before)` : '';
      if (!this.welcomed) this.say(`connected (epoch ${open.epoch.slice(0, 8)}, delivery after seq ${open.lastSeq})`);
      else
        this.say(
          `${open.resumed ? 'resumed' : 'reconnected'} after seq ${open.lastSeq}${attempts}${open.recovered ? '' : ' (position NOT recovered)'}`,
        );
      this.welcomed = true;
      this.connected = true;
      this.failedAttempts = 0;
    });
    client.on('disconnect', (event) => {
      const why = `${event.code} ${CLOSE_MEANING[event.code] ?? 'closed'}`;
      const next = event.willReconnect ? `, reconnecting in ${event.delayMs} ms` : '';
      if (this.connected) this.say(`disconnected: ${why}${next}`);
      else if (this.failedAttempts === 0) this.say(`relay unreachable (${why}); retrying with backoff`);
      if (!this.connected) this.failedAttempts += 1;
      this.connected = false;
    });
    client.on('gap', (gap) =>
      this.options.narrator.warn(
        this.name,
        `relay could not resume: lost from seq ${gap.lostFromSeq}, continues after ${gap.resumesAfterSeq}`,
      ),
    );
    client.on('reset', (reset) =>
      this.options.narrator.warn(this.name, `numbering reset (${reset.reason}); new epoch ${reset.epoch.slice(0, 8)}`),
    );
    client.on('error', (error) => this.say(`error ${error.code}: ${error.message}`));
    return client;
  }

  private say(what: string): void {
    this.options.narrator.say(this.name, what);
  }
}
