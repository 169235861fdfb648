/**
 * ClientConnection without a network: a fake socket, fake timers. Every way a connection ends
 * reports `connection-closed` exactly once, with the code it ended with.
 */
import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { WebSocket } from 'ws';
import { loadConfig } from '../../src/config.js';
import type { StreamRegistry } from '../../src/delivery/stream-registry.js';
import { RelayEvents } from '../../src/events.js';
import { createLogger } from '../../src/log.js';
import { AuthFailureLimiter, type AuthGate } from '../../src/overload/auth-failures.js';
import { signDevToken } from '../../src/server/auth.js';
import { ClientConnection } from '../../src/server/client-connection.js';
import { TokenKeys } from '../../src/server/token-keys.js';
import { backgroundClock } from '../../src/delivery/background-clock.js';

/** The parts of a `ws` socket ClientConnection uses; `terminate` and `close` end it as ws does. */
class FakeSocket extends EventEmitter {
  readonly pings: string[] = [];
  readonly sent: string[] = [];
  readonly reasons: string[] = [];
  bufferedAmount = 0;
  /** Set once the relay stopped reading from this socket (ws `pause`). */
  paused = false;
  private ended = false;

  pause(): void {
    this.paused = true;
  }

  ping(payload: string): void {
    this.pings.push(payload);
  }

  send(frame: string): void {
    this.sent.push(frame);
  }

  close(code: number, reason = ''): void {
    // As ws does: a reason over 123 bytes is a RangeError.
    if (Buffer.byteLength(reason) > 123) throw new RangeError('The message must not be greater than 123 bytes');
    this.reasons.push(reason);
    this.end(code);
  }

  terminate(): void {
    this.end(1006);
  }

  /** The client's side of the wire: it answers a ping. */
  answerPing(): void {
    this.emit('pong', Buffer.from(this.pings.at(-1) ?? ''));
  }

  /** A pong the client sends on its own, not in answer to a ping. */
  unsolicitedPong(payload = ''): void {
    this.emit('pong', Buffer.from(payload));
  }

  private end(code: number): void {
    if (this.ended) return;
    this.ended = true;
    // ws reports the close on a later turn.
    setTimeout(() => this.emit('close', code), 0);
  }
}

const config = loadConfig({
  JWT_SECRET: 'unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz',
  HEARTBEAT_MS: '1000',
  HELLO_TIMEOUT_MS: '10000',
});

function connect(authGate?: AuthGate): { socket: FakeSocket; closes: number[]; removed: ClientConnection[]; connection: ClientConnection } {
  const socket = new FakeSocket();
  const events = new RelayEvents();
  const closes: number[] = [];
  events.on('connection-closed', (code) => closes.push(code));
  const removed: ClientConnection[] = [];
  const connection = new ClientConnection(socket as unknown as WebSocket, {
    config,
    registry: {} as StreamRegistry,
    logger: createLogger('silent'),
    headerIdentity: undefined,
    tokenKeys: new TokenKeys(config.jwt),
    ...(authGate ? { authGate } : {}),
    retryAfterMs: () => 1_000,
    onHelloSettled: () => undefined,
    events,
    clock: backgroundClock,
    onClose: (closed) => removed.push(closed),
  });
  return { socket, closes, removed, connection };
}

describe('ClientConnection', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('reports a connection cut by the heartbeat once, as 1006', async () => {
    const { socket, closes, removed, connection } = connect();
    connection.heartbeat();
    expect(socket.pings).toHaveLength(1);
    connection.heartbeat();
    await vi.runAllTimersAsync();
    expect(closes).toEqual([1006]);
    expect(removed).toEqual([connection]);
    connection.heartbeat();
    expect(socket.pings).toHaveLength(1);
  });

  it('keeps a connection that answers every ping', async () => {
    const { socket, closes, connection } = connect();
    for (let beat = 0; beat < 4; beat += 1) {
      connection.heartbeat();
      socket.answerPing();
    }
    await vi.advanceTimersByTimeAsync(1_000);
    expect(socket.pings).toHaveLength(4);
    expect(closes).toEqual([]);
  });

  it('cuts a client that sends pongs on its own but never answers a ping, on the second beat', async () => {
    const { socket, closes, connection } = connect();
    socket.unsolicitedPong();
    connection.heartbeat();
    for (let pong = 0; pong < 10; pong += 1) {
      await vi.advanceTimersByTimeAsync(100);
      socket.unsolicitedPong(pong % 2 === 0 ? '' : 'not-the-payload');
    }
    connection.heartbeat();
    await vi.runAllTimersAsync();
    expect(socket.pings).toHaveLength(1);
    expect(closes).toEqual([1006]);
  });

  it('stops reading from a connection it closes for misbehaving (1008), not from one it closes to move it (1012)', () => {
    const misbehaving = connect();
    misbehaving.connection.close(1008, 'frame is not valid JSON');
    expect(misbehaving.socket.paused).toBe(true);
    const moved = connect();
    moved.connection.close(1012, 'relay restarting');
    expect(moved.socket.paused).toBe(false);
  });

  it('closes with a reason of 100 two-byte characters cut to whole characters within 123 bytes', async () => {
    const { socket, closes, connection } = connect();
    expect(() => connection.close(1008, 'é'.repeat(100))).not.toThrow();
    await vi.runAllTimersAsync();
    expect(closes).toEqual([1008]);
    expect(socket.reasons).toEqual(['é'.repeat(61)]);
    expect(Buffer.byteLength(socket.reasons[0]!)).toBe(122);
  });

  it('reports a close it sent once, with its code, though the socket then closes too', async () => {
    const { closes, connection } = connect();
    connection.close(1012, 'relay restarting');
    connection.close(1000, 'again');
    connection.terminate();
    await vi.runAllTimersAsync();
    expect(closes).toEqual([1012]);
  });

  it('reports a close that came from the client once, with the client code', async () => {
    const { socket, closes, connection } = connect();
    socket.close(1000);
    await vi.runAllTimersAsync();
    connection.heartbeat();
    connection.close(1012, 'late');
    expect(closes).toEqual([1000]);
  });

  it('closes with 4001 when no hello came within the hello timeout, on the injected clock', async () => {
    const { closes } = connect();
    await vi.advanceTimersByTimeAsync(9_999);
    expect(closes).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(closes).toEqual([4001]);
  });

  it('counts every failed hello against its address and, once the address has none left, refuses hellos unverified with 1013', async () => {
    const limiter = new AuthFailureLimiter(2);
    let failures = 0;
    const gate = (): AuthGate => {
      const inner = limiter.gate('203.0.113.7', () => Date.now());
      return {
        retryAfterMs: () => inner.retryAfterMs(),
        failed: () => {
          failures += 1;
          inner.failed();
        },
      };
    };
    const hello = (socket: FakeSocket, token: string) =>
      socket.emit('message', Buffer.from(JSON.stringify({ type: 'hello', token })), false);
    for (let i = 0; i < 2; i += 1) {
      const { socket, closes } = connect(gate());
      hello(socket, 'not-a-token');
      await vi.runAllTimersAsync();
      expect(closes).toEqual([4001]);
    }
    expect(failures).toBe(2);
    // Out of failures: a hello is refused before its token is looked at, valid or not (a bad one
    // verified would close with 4001 and count a third failure).
    for (const token of [signDevToken('alice', 'unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz'), 'not-a-token']) {
      const refused = connect(gate());
      hello(refused.socket, token);
      await vi.runAllTimersAsync();
      expect(refused.closes).toEqual([1013]);
      expect(refused.socket.reasons[0]).toMatch(/^retry-after=\d+ auth-failures$/);
    }
    expect(failures).toBe(2);
  });
});
