/**
 * A deliberately independent test client (it does not use the SDK): it resumes after every drop
 * and records everything it sees, so tests can check the guarantee from the outside.
 *
 * It processes a `msg` only when it is the next seq, acks by a coalescing rule, and, when told
 * to drop, terminates the socket at once (no close frame) and reconnects with a resume position
 * that is either the last seq it processed or the last seq it acked (so seqs in between come
 * again, as after a client crash).
 */
import WebSocket from 'ws';
import { SUBPROTOCOL, decodeServerFrame, type MsgFrame } from '../../src/protocol/frames.js';
import { rawDataToString } from '../../src/server/raw-data.js';

export interface SoakRecord {
  epoch: string;
  seq: number;
  id: string;
  data: unknown;
  redelivered: boolean;
}

export interface SoakClientOptions {
  url: string;
  token: () => string;
  /** Probability, per message received, of dropping the connection right after it. */
  dropRate?: number;
  /** Ack after this many processed messages (cumulative). */
  ackEvery?: number;
  window?: number;
  random?: () => number;
}

export class SoakClient {
  /** Every msg frame received, in arrival order, across connections. */
  readonly received: SoakRecord[] = [];
  /** Messages handed to "processing" (next seq only), in order. */
  readonly processed: SoakRecord[] = [];
  readonly resets: { epoch: string; lastSeq: number }[] = [];
  readonly welcomes: { epoch: string; lastSeq: number; resumed: boolean; recovered: boolean }[] = [];
  /** Seqs the client said it processed (hello resume lastSeq), per reconnect. */
  readonly resumedFrom: number[] = [];
  readonly closeCodes: number[] = [];
  /** Order violations seen on a single connection (must stay empty). */
  readonly violations: string[] = [];
  private connectionLast = 0;
  epoch: string | undefined;
  lastSeq = 0;
  ackedSeq = 0;
  connections = 0;
  private ws: WebSocket | undefined;
  private stopped = false;
  private waiters: (() => void)[] = [];

  constructor(private readonly options: SoakClientOptions) {}

  start(): void {
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    this.connections += 1;
    const ws = new WebSocket(this.options.url, [SUBPROTOCOL]);
    this.ws = ws;
    const random = this.options.random ?? Math.random;
    ws.on('open', () => {
      const hello: Record<string, unknown> = { type: 'hello', token: this.options.token() };
      if (this.options.window) hello.window = this.options.window;
      if (this.epoch !== undefined) {
        hello.resume = { epoch: this.epoch, lastSeq: this.lastSeq };
        this.resumedFrom.push(this.lastSeq);
      }
      ws.send(JSON.stringify(hello));
    });
    ws.on('message', (raw) => {
      if (ws !== this.ws) return;
      const decoded = decodeServerFrame(rawDataToString(raw));
      if (!decoded.ok) throw new Error(`invalid frame from the relay: ${decoded.reason}`);
      const frame = decoded.frame;
      switch (frame.type) {
        case 'welcome':
          this.welcomes.push({ epoch: frame.epoch, lastSeq: frame.lastSeq, resumed: frame.resumed, recovered: frame.recovered });
          if (frame.epoch === this.epoch && frame.recovered && frame.lastSeq !== this.lastSeq) {
            this.violations.push(`welcome lastSeq ${frame.lastSeq} differs from the resumed position ${this.lastSeq}`);
          }
          this.epoch = frame.epoch;
          this.lastSeq = frame.lastSeq;
          this.ackedSeq = Math.min(this.ackedSeq, frame.lastSeq);
          this.connectionLast = frame.lastSeq;
          break;
        case 'reset':
          this.resets.push({ epoch: frame.epoch, lastSeq: frame.lastSeq });
          this.epoch = frame.epoch;
          this.lastSeq = frame.lastSeq;
          this.ackedSeq = frame.lastSeq;
          break;
        case 'msg':
          this.onMsg(ws, frame, random);
          break;
        // The guarantee is checked on seqs alone, and none of these moves a position: a status says
        // degraded or ok, an error reports a frame the relay ignored (an ack of a seq from before a
        // drop, a resume ahead of the stream, which the welcome already corrected), a pong answers a ping.
        case 'status':
        case 'error':
        case 'pong':
          break;
      }
      this.wake();
    });
    ws.on('close', (code) => {
      this.closeCodes.push(code);
      if (ws === this.ws) setTimeout(() => this.connect(), 20 + random() * 80);
    });
    ws.on('error', () => undefined);
  }

  private onMsg(ws: WebSocket, frame: MsgFrame, random: () => number): void {
    const record: SoakRecord = { epoch: this.epoch ?? '', seq: frame.seq, id: frame.id, data: frame.data, redelivered: frame.redelivered };
    this.received.push(record);
    if (frame.seq !== this.connectionLast + 1) {
      this.violations.push(`seq ${frame.seq} after ${this.connectionLast} on one connection`);
    }
    this.connectionLast = frame.seq;
    if (frame.seq === this.lastSeq + 1) {
      this.processed.push(record);
      this.lastSeq = frame.seq;
      if (this.lastSeq - this.ackedSeq >= (this.options.ackEvery ?? 5)) {
        ws.send(JSON.stringify({ type: 'ack', seq: this.lastSeq }));
        this.ackedSeq = this.lastSeq;
      }
    }
    if (random() < (this.options.dropRate ?? 0)) {
      // Crash-like drop: sometimes forget what was processed but not acked.
      if (random() < 0.5) this.lastSeq = this.ackedSeq;
      this.ws = undefined;
      ws.terminate();
      setTimeout(() => this.connect(), 20 + random() * 80);
    }
  }

  /** Acks everything processed so far. */
  flushAck(): void {
    if (this.ws?.readyState === WebSocket.OPEN && this.lastSeq > this.ackedSeq) {
      this.ws.send(JSON.stringify({ type: 'ack', seq: this.lastSeq }));
      this.ackedSeq = this.lastSeq;
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Waits until `predicate` holds (checked on every frame and every 200 ms). */
  async until(predicate: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  stop(): void {
    this.stopped = true;
    const ws = this.ws;
    this.ws = undefined;
    ws?.close();
  }
}

/**
 * Checks the contract for one client over one epoch's published messages: processed seqs are
 * 1..n gap-free and in publish order, each connection got strictly consecutive seqs from its
 * welcome on, anything received twice was announced as redelivered, and (unless allowed) no
 * `reset` came.
 */
export function checkSoak(client: SoakClient, published: readonly string[], options: { allowResets?: boolean } = {}): string[] {
  const problems: string[] = [...client.violations];
  if (!options.allowResets && client.resets.length > 0) problems.push(`${client.resets.length} unexpected reset(s)`);
  const seqToId = new Map<string, string>();
  for (const record of client.received) {
    const key = `${record.epoch}/${record.seq}`;
    const known = seqToId.get(key);
    if (known !== undefined && known !== record.id) problems.push(`seq ${key} carried ${known} and ${record.id}`);
    seqToId.set(key, record.id);
  }
  // A client that forgot its position processes some seqs again (at-least-once); the first time
  // each seq was processed must follow publish order exactly, with no gap.
  const firstIds: string[] = [];
  let highest = 0;
  for (const record of client.processed) {
    if (record.seq === highest + 1) {
      firstIds.push(record.id);
      highest = record.seq;
    } else if (record.seq > highest + 1) {
      problems.push(`processed seq ${record.seq} after ${highest}: a gap`);
    } else if (firstIds[record.seq - 1] !== record.id) {
      problems.push(`seq ${record.seq} processed again with another message`);
    }
  }
  if (firstIds.length !== published.length || firstIds.some((id, i) => id !== published[i])) {
    const firstBad = firstIds.findIndex((id, i) => id !== published[i]);
    problems.push(`processed ${firstIds.length} distinct of ${published.length}; first difference at index ${firstBad}`);
  }
  const seen = new Set<string>();
  for (const record of client.received) {
    const key = `${record.epoch}/${record.seq}`;
    if (seen.has(key) && !record.redelivered) problems.push(`seq ${key} received again without redelivered:true`);
    seen.add(key);
  }
  return problems;
}

/**
 * Waits until every client processed `target` seqs. On timeout the error says where each
 * unfinished client stands (position, connections, last close codes and welcome) together with
 * what `diagnose` adds for its user (a stream snapshot, the queue's counts), so that a stall can
 * be told from a slow run.
 */
export async function untilAllProcessed(
  clients: readonly SoakClient[],
  users: readonly string[],
  target: number,
  timeoutMs: number,
  diagnose?: (user: string) => unknown,
): Promise<void> {
  try {
    await Promise.all(clients.map((client) => client.until(() => client.lastSeq >= target, timeoutMs, `seq ${target}`)));
  } catch (error) {
    const stalled = await Promise.all(
      clients
        .map((client, i) => ({ client, user: users[i] ?? `#${i}` }))
        .filter(({ client }) => client.lastSeq < target)
        .map(async ({ client, user }) => ({
          user,
          lastSeq: client.lastSeq,
          acked: client.ackedSeq,
          received: client.received.length,
          connections: client.connections,
          codes: client.closeCodes.slice(-5),
          welcome: client.welcomes.at(-1),
          violations: client.violations.slice(0, 5),
          relay: diagnose ? await Promise.resolve(diagnose(user)).catch((e: unknown) => String(e)) : undefined,
        })),
    );
    throw new Error(`${(error as Error).message}; ${stalled.length} client(s) stalled:\n${JSON.stringify(stalled, null, 1)}`, {
      cause: error,
    });
  }
}
