/**
 * InboxClient against an in-memory fake WebSocket driven by the test (playing the relay), with
 * fake timers: the state machine, reconnection, liveness, token refresh, dedupe, ack
 * coalescing, the nack policy, reset handling and both delivery APIs.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  ClientErrorCode,
  InboxClient,
  LocalStoragePositionStore,
  MemoryPositionStore,
  requeueUpTo,
  type ClientState,
  type InboxClientError,
  type InboxClientEvents,
  type InboxClientOptions,
  type InboxMessage,
  type StorageLike,
} from '../../src/client/index.js';
import type { ClientFrame, ServerFrame, WelcomeFrame } from '../../src/protocol/index.js';

type Handlers = {
  open: (() => void)[];
  error: (() => void)[];
  message: ((event: { data: unknown }) => void)[];
  close: ((event: { code: number; reason: string }) => void)[];
};

/** The relay's end of one socket, as a test drives it. */
class FakeSocket {
  readyState = 0;
  readonly sent: ClientFrame[] = [];
  closedByClient: { code: number | undefined; reason: string | undefined } | undefined;
  /** Called for every frame the client sends (a test may play a flow-controlled relay here). */
  onFrame: ((frame: ClientFrame) => void) | undefined;
  readonly #handlers: Handlers = { open: [], error: [], message: [], close: [] };

  constructor(
    readonly url: string,
    readonly protocols: string[],
  ) {}

  addEventListener<K extends keyof Handlers>(type: K, listener: Handlers[K][number]): void {
    (this.#handlers[type] as Handlers[K][number][]).push(listener);
  }

  send(data: string): void {
    if (this.readyState !== 1) throw new Error('InvalidStateError');
    const frame = JSON.parse(data) as ClientFrame;
    this.sent.push(frame);
    this.onFrame?.(frame);
  }

  close(code?: number, reason?: string): void {
    if (this.readyState >= 2) return;
    this.closedByClient = { code, reason };
    this.readyState = 2;
    queueMicrotask(() => this.drop(code ?? 1005, reason ?? ''));
  }

  // The relay's side ---------------------------------------------------------------------------
  accept(): void {
    this.readyState = 1;
    for (const listener of this.#handlers.open) listener();
  }

  deliver(...frames: ServerFrame[]): void {
    for (const frame of frames) for (const listener of this.#handlers.message) listener({ data: JSON.stringify(frame) });
  }

  drop(code = 1006, reason = ''): void {
    if (this.readyState === 3) return;
    this.readyState = 3;
    for (const listener of this.#handlers.close) listener({ code, reason });
  }

  framesOf<T extends ClientFrame['type']>(type: T): Extract<ClientFrame, { type: T }>[] {
    return this.sent.filter((frame): frame is Extract<ClientFrame, { type: T }> => frame.type === type);
  }

  /** Acks and nacks in the order sent. */
  settlements(): string[] {
    return this.sent.flatMap((f) => (f.type === 'ack' ? [`ack ${f.seq}`] : f.type === 'nack' ? [`nack ${f.seq} ${f.requeue}`] : []));
  }
}

/** A socket that shows WebSocket pings, as `ws` does. */
class PingAwareSocket extends FakeSocket {
  readonly pingListeners: (() => void)[] = [];
  on(event: string, listener: () => void): this {
    if (event === 'ping') this.pingListeners.push(listener);
    return this;
  }
}

function welcome(overrides: Partial<WelcomeFrame> = {}): WelcomeFrame {
  return {
    type: 'welcome',
    session: 's',
    user: 'u',
    epoch: 'e1',
    lastSeq: 0,
    resumed: false,
    recovered: true,
    window: 10,
    heartbeatMs: 0,
    ...overrides,
  };
}

function msg(seq: number, redelivered = false): ServerFrame {
  return { type: 'msg', seq, id: `m${seq}`, ts: 1, redelivered, contentType: 'application/json', data: { n: seq } };
}

function base64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64').replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fakeJwt(claims: Record<string, unknown>): string {
  return `${base64url('{"alg":"HS256"}')}.${base64url(JSON.stringify(claims))}.c2ln`;
}

/** Where a promise stands once queued promise callbacks have run (timers stay frozen). */
async function stateOf(promise: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  let state: 'pending' | 'resolved' | 'rejected' = 'pending';
  promise.then(
    () => (state = 'resolved'),
    () => (state = 'rejected'),
  );
  await settle();
  return state;
}

/** Lets promise chains run (timers stay frozen). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i += 1) await Promise.resolve();
}

function harness(options: Partial<InboxClientOptions> = {}, socketClass: typeof FakeSocket = FakeSocket) {
  const sockets: FakeSocket[] = [];
  const Tracked = class extends socketClass {
    constructor(url: string, protocols: string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  };
  const client = new InboxClient({ url: 'ws://relay.test', token: 'tok', webSocket: Tracked, random: () => 0.5, ...options });
  const states: ClientState[] = [];
  const errors: InboxClientError[] = [];
  const seen: InboxMessage[] = [];
  client.on('state', ({ to }) => states.push(to));
  client.on('error', (error) => errors.push(error));
  const events = <K extends keyof InboxClientEvents>(name: K): InboxClientEvents[K][] => {
    const list: InboxClientEvents[K][] = [];
    client.on(name, (payload: InboxClientEvents[K]) => list.push(payload));
    return list;
  };
  const socket = (): FakeSocket => {
    const last = sockets.at(-1);
    if (!last) throw new Error('no socket opened yet');
    return last;
  };
  /** Connects and completes the handshake on a new socket. */
  const open = async (frame: Partial<WelcomeFrame> = {}): Promise<FakeSocket> => {
    const before = sockets.length;
    const connected = client.connect();
    await settle();
    expect(sockets.length).toBe(before + 1);
    socket().accept();
    socket().deliver(welcome(frame));
    await settle();
    await connected;
    return socket();
  };
  /** Completes the handshake on the socket the client just opened. */
  const handshake = async (frame: Partial<WelcomeFrame> = {}): Promise<FakeSocket> => {
    socket().accept();
    socket().deliver(welcome(frame));
    await settle();
    return socket();
  };
  const record = (): void => {
    client.on('message', (message) => void seen.push(message));
  };
  return { client, sockets, states, errors, seen, events, socket, open, handshake, record };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(1_700_000_000_000);
});

afterEach(() => {
  vi.useRealTimers();
});

describe('InboxClient connection lifecycle', () => {
  it('connects, says hello with the token first, and goes connecting -> open', async () => {
    const h = harness();
    const opened = h.client.connect();
    await settle();
    expect(h.states).toEqual(['connecting']);
    expect(h.sockets).toHaveLength(1);
    expect(h.socket().url).toBe('ws://relay.test/v1/stream');
    expect(h.socket().protocols).toEqual(['inbox-relay.v1']);
    h.socket().accept();
    expect(h.socket().sent).toEqual([{ type: 'hello', token: 'tok' }]);
    h.socket().deliver(welcome({ lastSeq: 7 }));
    await expect(opened).resolves.toMatchObject({ epoch: 'e1', lastSeq: 7, window: 10 });
    expect(h.states).toEqual(['connecting', 'open']);
    expect(h.client.position).toEqual({ epoch: 'e1', lastSeq: 7, user: 'u' });
  });

  it('asks for the window it was configured with', async () => {
    const h = harness({ window: 32 });
    const connected = h.client.connect();
    await settle();
    h.socket().accept();
    expect(h.socket().sent[0]).toEqual({ type: 'hello', token: 'tok', window: 32 });
    expect(await stateOf(connected)).toBe('pending');
  });

  it('reconnects after 1012 with a jittered delay and resumes from its position', async () => {
    const h = harness();
    h.record();
    const first = await h.open();
    first.deliver(msg(1), msg(2));
    await settle();
    first.drop(1012, 'relay restarting');
    expect(h.states.at(-1)).toBe('reconnecting');
    // random 0.5 of the first window (500 ms).
    await vi.advanceTimersByTimeAsync(249);
    expect(h.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(h.sockets).toHaveLength(2);
    h.socket().accept();
    expect(h.socket().sent[0]).toEqual({ type: 'hello', token: 'tok', resume: { epoch: 'e1', lastSeq: 2 } });
    expect(h.states).toEqual(['connecting', 'open', 'reconnecting', 'connecting']);
  });

  it('backs off exponentially while the relay is unreachable, and starts over after a welcome', async () => {
    const h = harness();
    const connected = h.client.connect();
    await settle();
    const gaps: number[] = [];
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const count = h.sockets.length;
      h.socket().drop(1006);
      const started = Date.now();
      while (h.sockets.length === count) {
        await vi.advanceTimersByTimeAsync(10);
        await settle();
      }
      gaps.push(Date.now() - started);
    }
    expect(gaps).toEqual([250, 500, 1000, 2000, 4000]);
    expect(await stateOf(connected)).toBe('pending');
    await h.handshake();
    expect(await stateOf(connected)).toBe('resolved');
    const count = h.sockets.length;
    h.socket().drop(1006);
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    expect(h.sockets).toHaveLength(count + 1);
  });

  it('waits at least the retry-after of a 1013 before coming back', async () => {
    const h = harness();
    const disconnects = h.events('disconnect');
    await h.open();
    h.socket().drop(1013, 'retry-after=3000 unavailable');
    expect(disconnects).toEqual([{ code: 1013, reason: 'retry-after=3000 unavailable', willReconnect: true, delayMs: 3250 }]);
    await vi.advanceTimersByTimeAsync(3249);
    expect(h.sockets).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    await settle();
    expect(h.sockets).toHaveLength(2);
  });

  it.each([1008, 1009, 4003])('closes with an error and never reconnects after %i', async (code) => {
    const h = harness();
    const iterator = h.client[Symbol.asyncIterator]();
    const next = iterator.next();
    await h.open();
    h.socket().drop(code, 'no');
    await settle();
    expect(h.client.state).toBe('closed');
    expect(h.errors.map((e) => [e.code, e.closeCode, e.temporary])).toEqual([[ClientErrorCode.terminalClose, code, false]]);
    await expect(next).rejects.toMatchObject({ code: ClientErrorCode.terminalClose, closeCode: code });
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(h.sockets).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it.each([
    [4001, 'invalid token'],
    [4008, 'token expired'],
  ])('rejects connect() and emits error when the relay refuses a fixed token with %i', async (code, reason) => {
    const h = harness({ token: 'bad-token' });
    const disconnects = h.events('disconnect');
    const connected = h.client.connect();
    await settle();
    h.socket().accept();
    h.socket().drop(code, reason);
    await settle();
    await expect(connected).rejects.toMatchObject({ code: ClientErrorCode.terminalClose, closeCode: code, temporary: false });
    expect(h.errors.map((e) => [e.code, e.closeCode, e.temporary])).toEqual([[ClientErrorCode.terminalClose, code, false]]);
    expect(h.errors[0]?.message).toMatch(/token provider/);
    expect(disconnects).toEqual([{ code, reason, willReconnect: false, delayMs: undefined }]);
    expect(h.client.state).toBe('closed');
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(h.sockets).toHaveLength(1);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('gives up when a fixed token expires on an open connection', async () => {
    const h = harness({ token: 'tok' });
    await h.open();
    h.socket().drop(4008, 'token expired');
    await settle();
    expect(h.client.state).toBe('closed');
    expect(h.errors.map((e) => [e.code, e.closeCode])).toEqual([[ClientErrorCode.terminalClose, 4008]]);
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(h.sockets).toHaveLength(1);
  });

  it('gives a token provider one more call, then rejects connect() when its next token is refused too', async () => {
    const reasons: string[] = [];
    const h = harness({
      token: ({ reason }) => {
        reasons.push(reason);
        return `token-${reasons.length}`;
      },
    });
    const connected = h.client.connect();
    await settle();
    h.socket().accept();
    h.socket().drop(4001, 'invalid token');
    await settle();
    expect(h.errors).toEqual([]);
    expect(await stateOf(connected)).toBe('pending');
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    expect(h.sockets).toHaveLength(2);
    h.socket().accept();
    expect(h.socket().sent[0]).toMatchObject({ type: 'hello', token: 'token-2' });
    h.socket().drop(4001, 'invalid token');
    await settle();
    await expect(connected).rejects.toMatchObject({ code: ClientErrorCode.terminalClose, closeCode: 4001, temporary: false });
    expect(h.errors.map((e) => e.closeCode)).toEqual([4001]);
    expect(reasons).toEqual(['connect', 'rejected']);
    await vi.advanceTimersByTimeAsync(10 * 60_000);
    expect(h.sockets).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("starts a provider's refusal count over after a welcome", async () => {
    let calls = 0;
    const h = harness({ token: () => `token-${(calls += 1)}` });
    await h.open();
    h.socket().drop(4008, 'token expired');
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    await h.handshake();
    h.socket().drop(4008, 'token expired');
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    expect(h.sockets).toHaveLength(3);
    expect(h.errors).toEqual([]);
    expect(h.client.state).toBe('connecting');
  });

  it('reconnects with a fixed token after 4001 hello timeout (the token was never checked)', async () => {
    const h = harness({ token: 'tok' });
    await h.open();
    h.socket().drop(4001, 'hello timeout');
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    expect(h.sockets).toHaveLength(2);
    expect(h.errors).toEqual([]);
  });

  it('stops without an error when the relay closes with 1000', async () => {
    const h = harness();
    await h.open();
    h.socket().drop(1000, 'bye');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.client.state).toBe('closed');
    expect(h.errors).toEqual([]);
    expect(h.sockets).toHaveLength(1);
  });

  it.each([
    [4001, 'rejected'],
    [4008, 'expired'],
  ])('asks the token provider for a new token after %i', async (code, reason) => {
    const reasons: string[] = [];
    const h = harness({
      token: ({ reason: why }) => {
        reasons.push(why);
        return `token-${reasons.length}`;
      },
    });
    await h.open();
    h.socket().drop(code, 'token');
    await vi.advanceTimersByTimeAsync(500);
    await settle();
    h.socket().accept();
    expect(reasons).toEqual(['connect', reason]);
    expect(h.socket().sent[0]).toMatchObject({ type: 'hello', token: 'token-2' });
  });

  it('reports a failing token provider and retries with backoff', async () => {
    let calls = 0;
    const h = harness({
      token: () => {
        calls += 1;
        if (calls < 3) throw new Error('auth service down');
        return 'tok';
      },
    });
    const connected = h.client.connect();
    await settle();
    expect(h.sockets).toHaveLength(0);
    expect(h.errors.map((e) => e.code)).toEqual([ClientErrorCode.tokenProvider]);
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    await vi.advanceTimersByTimeAsync(500);
    await settle();
    expect(calls).toBe(3);
    expect(h.sockets).toHaveLength(1);
    expect(await stateOf(connected)).toBe('pending');
  });

  it('gives up on a connection that gets no welcome within connectTimeoutMs', async () => {
    const h = harness({ connectTimeoutMs: 1_000 });
    const connected = h.client.connect();
    await settle();
    h.socket().accept();
    await vi.advanceTimersByTimeAsync(999);
    expect(h.client.state).toBe('connecting');
    await vi.advanceTimersByTimeAsync(1);
    expect(h.sockets[0]?.closedByClient).toBeDefined();
    expect(h.client.state).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    expect(h.sockets).toHaveLength(2);
    expect(await stateOf(connected)).toBe('pending');
  });

  it('pings where WebSocket pings are invisible and replaces a connection silent for two heartbeats', async () => {
    const h = harness();
    const disconnects = h.events('disconnect');
    const first = await h.open({ heartbeatMs: 1_000 });
    await vi.advanceTimersByTimeAsync(1_000);
    expect(first.framesOf('ping')).toEqual([{ type: 'ping', id: 1 }]);
    await vi.advanceTimersByTimeAsync(999);
    expect(h.client.state).toBe('open');
    await vi.advanceTimersByTimeAsync(1);
    expect(h.client.state).toBe('reconnecting');
    expect(disconnects).toEqual([{ code: 1006, reason: 'heartbeat timeout', willReconnect: true, delayMs: 250 }]);
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    expect(h.sockets).toHaveLength(2);
  });

  it('stays open as long as the relay answers pings', async () => {
    const h = harness();
    const first = await h.open({ heartbeatMs: 1_000 });
    first.onFrame = (frame) => {
      if (frame.type === 'ping') first.deliver({ type: 'pong', id: frame.id });
    };
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.client.state).toBe('open');
    expect(first.framesOf('ping')).toHaveLength(60);
    expect(h.sockets).toHaveLength(1);
  });

  it('relies on WebSocket pings where the runtime shows them, without sending its own', async () => {
    const h = harness({}, PingAwareSocket);
    const first = (await h.open({ heartbeatMs: 1_000 })) as PingAwareSocket;
    for (let i = 0; i < 10; i += 1) {
      await vi.advanceTimersByTimeAsync(1_000);
      for (const listener of first.pingListeners) listener();
    }
    expect(first.framesOf('ping')).toEqual([]);
    expect(h.client.state).toBe('open');
    await vi.advanceTimersByTimeAsync(2_000);
    expect(h.client.state).toBe('reconnecting');
  });

  it('refreshes the token before it expires, on the same connection', async () => {
    const issued: string[] = [];
    const h = harness({
      tokenRefreshLeadMs: 30_000,
      token: () => {
        const token = fakeJwt({ sub: 'u', exp: Math.floor(Date.now() / 1000) + 120, n: issued.length });
        issued.push(token);
        return token;
      },
    });
    const first = await h.open();
    await vi.advanceTimersByTimeAsync(89_000);
    expect(first.framesOf('refresh')).toEqual([]);
    await vi.advanceTimersByTimeAsync(1_000);
    await settle();
    expect(first.framesOf('refresh')).toEqual([{ type: 'refresh', token: issued[1] }]);
    await vi.advanceTimersByTimeAsync(90_000);
    await settle();
    expect(first.framesOf('refresh')).toHaveLength(2);
    expect(h.sockets).toHaveLength(1);
  });

  it('close() flushes the pending ack, closes with 1000 and leaves no timer behind', async () => {
    const h = harness({ tokenRefreshLeadMs: 30_000, token: fakeJwt({ sub: 'u', exp: Math.floor(Date.now() / 1000) + 3600 }) });
    h.record();
    const first = await h.open({ heartbeatMs: 1_000 });
    first.deliver(msg(1));
    await settle();
    expect(first.framesOf('ack')).toEqual([]);
    await h.client.close();
    expect(first.settlements()).toEqual(['ack 1']);
    expect(first.closedByClient).toEqual({ code: 1000, reason: 'client closing' });
    expect(h.client.state).toBe('closed');
    expect(vi.getTimerCount()).toBe(0);
    await h.client.close();
  });

  it('close() while reconnecting cancels the reconnect', async () => {
    const h = harness();
    await h.open();
    h.socket().drop(1011);
    await h.client.close();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(h.sockets).toHaveLength(1);
    expect(h.states.at(-1)).toBe('closed');
    expect(vi.getTimerCount()).toBe(0);
  });

  it('close() before the first welcome rejects connect()', async () => {
    const h = harness();
    const opened = h.client.connect();
    await settle();
    await h.client.close();
    await expect(opened).rejects.toMatchObject({ code: ClientErrorCode.clientClosed });
  });

  it('ignores everything a connection it gave up on still sends', async () => {
    const h = harness();
    h.record();
    const first = await h.open({ heartbeatMs: 1_000 });
    await vi.advanceTimersByTimeAsync(2_000);
    expect(h.client.state).toBe('reconnecting');
    first.deliver(msg(1), { type: 'status', state: 'degraded' });
    await settle();
    expect(h.seen).toEqual([]);
    expect(h.client.stats().received).toBe(0);
  });
});

describe('InboxClient delivery', () => {
  it('hands messages over in order and acks cumulatively: at half the window at once, the rest after ackDelayMs', async () => {
    const h = harness();
    h.record();
    const first = await h.open({ window: 10 });
    first.deliver(...[1, 2, 3, 4, 5, 6, 7].map((seq) => msg(seq)));
    await settle();
    expect(h.seen.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(first.settlements()).toEqual(['ack 5']);
    await vi.advanceTimersByTimeAsync(50);
    expect(first.settlements()).toEqual(['ack 5', 'ack 7']);
    expect(h.client.stats()).toMatchObject({ received: 7, processed: 7, acksSent: 2 });
  });

  it('acks only after the handler resolved', async () => {
    const h = harness();
    let release: () => void = () => undefined;
    h.client.on('message', () => new Promise<void>((resolve) => (release = resolve)));
    const first = await h.open({ window: 2 });
    first.deliver(msg(1));
    await settle();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(first.settlements()).toEqual([]);
    release();
    await settle();
    expect(first.settlements()).toEqual(['ack 1']);
  });

  it('runs handlers one message at a time, in order, even when they are slow', async () => {
    const h = harness();
    const log: string[] = [];
    h.client.on('message', async (m) => {
      log.push(`start ${m.seq}`);
      await new Promise((resolve) => setTimeout(resolve, 100 - m.seq * 10));
      log.push(`end ${m.seq}`);
    });
    const first = await h.open();
    first.deliver(msg(1), msg(2), msg(3));
    await vi.advanceTimersByTimeAsync(1_000);
    expect(log).toEqual(['start 1', 'end 1', 'start 2', 'end 2', 'start 3', 'end 3']);
  });

  it('keeps a small window flowing without waiting for the ack timer', async () => {
    const h = harness();
    h.record();
    const first = await h.open({ window: 4 });
    // Play a flow-controlled relay: never more than `window` unacked.
    let sent = 0;
    let acked = 0;
    const pump = (): void => {
      while (sent - acked < 4 && sent < 40) first.deliver(msg(++sent));
    };
    first.onFrame = (frame) => {
      if (frame.type === 'ack') {
        acked = frame.seq;
        queueMicrotask(pump);
      }
    };
    pump();
    for (let i = 0; i < 20; i += 1) await settle();
    expect(h.seen.map((m) => m.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    expect(acked).toBe(40);
  });

  it('suppresses duplicates and never hands the same seq twice', async () => {
    const h = harness();
    h.record();
    const first = await h.open();
    first.deliver(msg(1), msg(2), msg(1, true), msg(2, true), msg(3));
    await settle();
    expect(h.seen.map((m) => m.seq)).toEqual([1, 2, 3]);
    expect(h.client.stats().duplicates).toBe(2);
  });

  it('drops a seq ahead of its turn and resumes on a new connection', async () => {
    const h = harness();
    h.record();
    const first = await h.open();
    first.deliver(msg(1), msg(3));
    await settle();
    expect(h.seen.map((m) => m.seq)).toEqual([1]);
    expect(h.errors.map((e) => e.code)).toEqual([ClientErrorCode.sequenceGap]);
    expect(h.client.state).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    h.socket().accept();
    expect(h.socket().sent[0]).toMatchObject({ resume: { epoch: 'e1', lastSeq: 1 } });
  });

  it('requeues a failed message, drops what came after it, and takes the replay in order', async () => {
    const h = harness();
    const seen: string[] = [];
    let failed = false;
    h.client.on('message', (m) => {
      seen.push(`${m.seq}${m.redelivered ? 'r' : ''}`);
      if (m.seq === 2 && !failed) {
        failed = true;
        throw new Error('transient');
      }
    });
    const first = await h.open();
    first.deliver(msg(1), msg(2), msg(3));
    await settle();
    expect(first.settlements()).toEqual(['ack 1', 'nack 2 true']);
    // Frames the relay sent before it saw the nack, then the replay.
    first.deliver(msg(4), msg(2, true), msg(3, true), msg(4, true));
    await settle();
    await vi.advanceTimersByTimeAsync(50);
    expect(seen).toEqual(['1', '2', '2r', '3r', '4r']);
    expect(first.settlements()).toEqual(['ack 1', 'nack 2 true', 'ack 4']);
    expect(h.errors.map((e) => e.code)).toEqual([ClientErrorCode.handlerFailed]);
    // Buffered 3 was dropped at the nack; only 4, in flight when the relay rewound, arrived ahead.
    expect(h.client.stats()).toMatchObject({ requeued: 1, processed: 4, outOfSequence: 1 });
  });

  it('dead-letters after the policy ran out of requeues, and moves on', async () => {
    const h = harness({ nackPolicy: requeueUpTo(2) });
    const deadLetters = h.events('deadLetter');
    const seen: number[] = [];
    h.client.on('message', (m) => {
      seen.push(m.seq);
      if (m.seq === 1) throw new Error('poison');
    });
    const first = await h.open();
    first.deliver(msg(1));
    await settle();
    first.deliver(msg(1, true));
    await settle();
    first.deliver(msg(1, true));
    await settle();
    first.deliver(msg(2));
    await settle();
    await vi.advanceTimersByTimeAsync(50);
    expect(seen).toEqual([1, 1, 1, 2]);
    expect(first.settlements()).toEqual(['nack 1 true', 'nack 1 true', 'nack 1 false', 'ack 2']);
    expect(deadLetters.map((d) => [d.message.seq, d.attempts])).toEqual([[1, 3]]);
    expect(h.client.position?.lastSeq).toBe(2);
  });

  it('treats a relay-side nack-limit dead-letter as done and resumes after it', async () => {
    const h = harness({ nackPolicy: requeueUpTo(100) });
    const deadLetters = h.events('deadLetter');
    h.client.on('message', (m) => {
      if (m.seq === 1) throw new Error('poison');
    });
    const first = await h.open();
    first.deliver(msg(1), msg(2));
    await settle();
    expect(first.settlements()).toEqual(['nack 1 true']);
    first.deliver(msg(2), { type: 'error', code: 'RELAY_ERR_NACK_LIMIT', message: 'seq 1 was nacked too often and is dead-lettered' });
    await settle();
    expect(deadLetters.map((d) => d.message.seq)).toEqual([1]);
    expect(h.client.state).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    h.socket().accept();
    expect(h.socket().sent[0]).toMatchObject({ resume: { epoch: 'e1', lastSeq: 1 } });
  });

  it('adopts a mid-stream reset, drops the old numbering and resumes in the new epoch', async () => {
    const h = harness();
    h.record();
    const resets = h.events('reset');
    const first = await h.open();
    first.deliver(msg(1), msg(2), msg(3));
    await settle();
    first.deliver({ type: 'reset', epoch: 'e2', lastSeq: 0, reason: 'epoch-lost' });
    first.drop(1012, 'epoch reset');
    await settle();
    expect(resets).toEqual([{ epoch: 'e2', lastSeq: 0, reason: 'epoch-lost', previous: { epoch: 'e1', lastSeq: 3, user: 'u' } }]);
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    const second = await h.handshake({ epoch: 'e2', lastSeq: 0, resumed: true });
    expect(second.sent[0]).toMatchObject({ resume: { epoch: 'e2', lastSeq: 0 } });
    second.deliver(msg(1), msg(2));
    await settle();
    expect(h.seen.map((m) => `${m.epoch}/${m.seq}`)).toEqual(['e1/1', 'e1/2', 'e1/3', 'e2/1', 'e2/2']);
    expect(resets).toHaveLength(1);
  });

  it('does not report a reset twice when the relay sends reset then welcome', async () => {
    const h = harness({ positionStore: new MemoryPositionStore({ epoch: 'e0', lastSeq: 4 }) });
    const resets = h.events('reset');
    const gaps = h.events('gap');
    const connected = h.client.connect();
    await settle();
    h.socket().accept();
    h.socket().deliver({ type: 'reset', epoch: 'e1', lastSeq: 0, reason: 'epoch-unknown' }, welcome({ recovered: false }));
    await settle();
    await connected;
    expect(resets.map((r) => r.reason)).toEqual(['epoch-unknown']);
    expect(gaps).toEqual([]);
  });

  it('reports an epoch changed at welcome (without a reset frame) as a reset', async () => {
    const h = harness({ positionStore: new MemoryPositionStore({ epoch: 'e0', lastSeq: 4 }) });
    const resets = h.events('reset');
    await h.open({ epoch: 'e1', lastSeq: 0 });
    expect(resets.map((r) => [r.epoch, r.previous?.epoch])).toEqual([['e1', 'e0']]);
  });

  it('reports recovered:false as a gap and continues after the welcome position', async () => {
    const h = harness({ positionStore: new MemoryPositionStore({ epoch: 'e1', lastSeq: 5 }) });
    h.record();
    const gaps = h.events('gap');
    const first = await h.open({ lastSeq: 9, resumed: true, recovered: false });
    expect(first.sent[0]).toMatchObject({ resume: { epoch: 'e1', lastSeq: 5 } });
    expect(gaps).toEqual([{ epoch: 'e1', lostFromSeq: 6, resumesAfterSeq: 9 }]);
    first.deliver(msg(10));
    await settle();
    expect(h.seen.map((m) => m.seq)).toEqual([10]);
  });

  it('surfaces status and error frames as events without closing', async () => {
    const h = harness();
    const statuses = h.events('status');
    const first = await h.open();
    first.deliver(
      { type: 'status', state: 'degraded', reason: 'broker down' },
      { type: 'error', code: 'RELAY_ERR_UNKNOWN_SEQ', message: 'ack for seq 9' },
      { type: 'status', state: 'ok' },
    );
    expect(statuses).toEqual([
      { state: 'degraded', reason: 'broker down' },
      { state: 'ok', reason: undefined },
    ]);
    expect(h.errors.map((e) => [e.code, e.fromServer])).toEqual([['RELAY_ERR_UNKNOWN_SEQ', true]]);
    expect(h.client.state).toBe('open');
  });

  it('reports an undecodable frame and keeps the connection', async () => {
    const h = harness();
    const first = await h.open();
    first.deliver({ type: 'msg', seq: 0 } as unknown as ServerFrame);
    expect(h.errors.map((e) => e.code)).toEqual([ClientErrorCode.badFrame]);
    expect(h.client.state).toBe('open');
  });

  it('iterates with for await, acking a message only when the loop asks for the next one', async () => {
    const h = harness();
    const first = await h.open({ window: 2 });
    const seen: number[] = [];
    let gate: () => void = () => undefined;
    const loop = (async () => {
      for await (const m of h.client) {
        seen.push(m.seq);
        if (m.seq === 1) await new Promise<void>((resolve) => (gate = resolve));
        if (m.seq === 3) break;
      }
    })();
    first.deliver(msg(1), msg(2), msg(3));
    await settle();
    expect(seen).toEqual([1]);
    expect(first.settlements()).toEqual([]);
    gate();
    await loop;
    expect(seen).toEqual([1, 2, 3]);
    expect(first.settlements()).toEqual(['ack 1', 'ack 2']);
  });

  it('hands a message a broken loop released to the next consumer, without a nack', async () => {
    const h = harness();
    const first = await h.open();
    first.deliver(msg(1), msg(2));
    for await (const m of h.client) {
      expect(m.seq).toBe(1);
      break;
    }
    const later: number[] = [];
    h.client.on('message', (m) => void later.push(m.seq));
    await settle();
    expect(later).toEqual([1, 2]);
    expect(first.framesOf('nack')).toEqual([]);
  });

  it('persists the position and resumes from it in a new client', async () => {
    const map = new Map<string, string>();
    const storage: StorageLike = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => void map.set(k, v) };
    const a = harness({ positionStore: new LocalStoragePositionStore('pos', storage) });
    a.record();
    const first = await a.open();
    first.deliver(msg(1), msg(2), msg(3));
    await settle();
    await a.client.close();
    expect(JSON.parse(map.get('pos') ?? '{}')).toEqual({ epoch: 'e1', lastSeq: 3, user: 'u' });

    const b = harness({ positionStore: new LocalStoragePositionStore('pos', storage) });
    const connected = b.client.connect();
    await settle();
    b.socket().accept();
    expect(b.socket().sent[0]).toEqual({ type: 'hello', token: 'tok', resume: { epoch: 'e1', lastSeq: 3 } });
    expect(await stateOf(connected)).toBe('pending');
  });

  it("does not resume another user's position", async () => {
    const h = harness({
      token: fakeJwt({ sub: 'bob', exp: Math.floor(Date.now() / 1000) + 3600 }),
      positionStore: new MemoryPositionStore({ epoch: 'e1', lastSeq: 3, user: 'alice' }),
    });
    const connected = h.client.connect();
    await settle();
    h.socket().accept();
    expect(h.socket().sent[0]).not.toHaveProperty('resume');
    expect(await stateOf(connected)).toBe('pending');
  });

  it('after a reconnect, suppresses the replay of a message handled while the connection dropped', async () => {
    const h = harness();
    const seen: number[] = [];
    let release: () => void = () => undefined;
    h.client.on('message', async (m) => {
      seen.push(m.seq);
      if (m.seq === 2) await new Promise<void>((resolve) => (release = resolve));
    });
    const first = await h.open();
    first.deliver(msg(1), msg(2));
    await settle();
    first.drop(1006);
    await vi.advanceTimersByTimeAsync(250);
    await settle();
    // The new hello went out while seq 2 was still being handled.
    const second = await h.handshake({ lastSeq: 1, resumed: true });
    expect(second.sent[0]).toMatchObject({ resume: { lastSeq: 1 } });
    second.deliver(msg(2, true));
    release();
    await settle();
    await vi.advanceTimersByTimeAsync(50);
    // The replayed 2 is not handled again, but acked: the relay holds it unacked on this connection.
    expect(seen).toEqual([1, 2]);
    expect(second.settlements()).toEqual(['ack 2']);
    second.deliver(msg(3));
    await settle();
    await vi.advanceTimersByTimeAsync(50);
    expect(seen).toEqual([1, 2, 3]);
    expect(second.settlements()).toEqual(['ack 2', 'ack 3']);
    expect(h.client.stats().duplicates).toBe(1);
  });
});
