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
const DELIVERY_LINE_MS = 300;

const CLOSE_MEANING: Record<number, string> = {
  1000: 'normal',
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

/** Seqs processed since the last delivery line, printed as one range. */
class DeliveryBatch {
  private first: number | undefined;
  private last = 0;
  private count = 0;
  private redelivered = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly print: (line: string) => void) {}

  add(message: InboxMessage): void {
    this.first ??= message.seq;
    this.last = message.seq;
    this.count += 1;
    if (message.redelivered) this.redelivered += 1;
    this.timer ??= setTimeout(() => this.flush(), DELIVERY_LINE_MS);
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.first === undefined) return;
    const range = this.first === this.last ? `seq ${this.first}` : `seq ${this.first}-${this.last}`;
    const again = this.redelivered > 0 ? `, ${this.redelivered} marked redelivered` : '';
    this.print(`got ${range} (${this.count} msg${this.count === 1 ? '' : 's'}${again})`);
    this.first = undefined;
    this.count = 0;
    this.redelivered = 0;
  }
}

/** A user's client that can be cut, restarted and closed by the scenario. */
export class DemoClient {
  private readonly store = new MemoryPositionStore();
  private readonly retired: Counters[] = [];
  private readonly batch: DeliveryBatch;
  private client: InboxClient;
  private socket: WebSocket | undefined;
  private welcomed = false;
  private connected = false;

  constructor(private readonly options: DemoClientOptions) {
    this.batch = new DeliveryBatch((line) => options.narrator.say(options.name, line));
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
    await within(this.client.connect(), this.options.startTimeoutMs, `${this.name}: no welcome from the relay within ${this.options.startTimeoutMs} ms`);
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
    this.say(`client stopped at seq ${this.store.load()?.lastSeq ?? 0}; starting a new one`);
    this.client = this.create();
    await this.start();
  }

  /** Counters of every client this one has been, summed. */
  stats(): ClientStats {
    const sum: Counters = { ...this.client.stats() };
    for (const old of this.retired) for (const key of Object.keys(sum) as (keyof Counters)[]) sum[key] += old[key];
    return sum;
  }

  /** Closes the client (flushes its acks). Idempotent. */
  async close(): Promise<void> {
    const client = this.client;
    if (client.state === 'closed') return;
    await client.close();
    this.batch.flush();
    this.connected = false;
    this.retired.push({ ...client.stats() });
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
      this.batch.add(message);
    });
    client.on('open', (open) => {
      this.connected = true;
      if (!this.welcomed) this.say(`connected (epoch ${open.epoch.slice(0, 8)}, delivery after seq ${open.lastSeq})`);
      else this.say(`${open.resumed ? 'resumed' : 'reconnected'} after seq ${open.lastSeq}${open.recovered ? '' : ' (position NOT recovered)'}`);
      this.welcomed = true;
    });
    client.on('disconnect', (event) => {
      const meaning = CLOSE_MEANING[event.code] ?? 'closed';
      const next = event.willReconnect ? `, retrying in ${event.delayMs} ms` : '';
      if (this.connected) this.say(`disconnected: ${event.code} ${meaning}${next}`);
      else this.say(`connect failed: ${event.code} ${meaning}${next}`);
      this.connected = false;
    });
    client.on('gap', (gap) => this.options.narrator.warn(this.name, `relay could not resume: lost from seq ${gap.lostFromSeq}, continues after ${gap.resumesAfterSeq}`));
    client.on('reset', (reset) => this.options.narrator.warn(this.name, `numbering reset (${reset.reason}); new epoch ${reset.epoch.slice(0, 8)}`));
    client.on('error', (error) => this.say(`error ${error.code}: ${error.message}`));
    return client;
  }

  private say(what: string): void {
    this.batch.flush();
    this.options.narrator.say(this.name, what);
  }
}
