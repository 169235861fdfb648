/**
 * Everything a client connection sends goes through one `SocketWriter`, which keeps the socket's
 * send buffer (`ws.bufferedAmount`) bounded by `sendBufferHighWaterBytes`:
 *
 * - `msg` frames (`sendMsg`) are paced: once the buffer reaches the high-water mark the writer is
 *   `blocked` (the stream stops offering messages) and `onDrained` runs when a send completes with
 *   the buffer below half of it. The buffer passes the mark by one `msg` frame at most.
 * - Replies a client provokes (`pong`, `error`) are sent by `reply` only when they fit under the
 *   mark; otherwise nothing is queued and `reply` returns false (the caller closes the connection).
 *   A client that sends pings and never reads its socket therefore cannot grow the relay's memory.
 * - Control frames the relay sends on its own (`welcome`, `reset`, `status`) are a handful per
 *   connection whatever the client does, and go out unconditionally (`sendControl`).
 *
 * Frames sent in one turn are corked into one write on the underlying TCP socket.
 */
import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

export interface SocketWriterOptions {
  /** `sendBufferHighWaterBytes`. */
  highWaterBytes: number;
  /** The upgraded TCP socket under `ws`, to cork a turn's frames; omitted in unit tests. */
  socket?: Pick<Duplex, 'cork' | 'uncork'>;
  /** A blocked writer's buffer drained below half the mark: offer messages again. */
  onDrained: () => void;
}

export class SocketWriter {
  private blockedByBuffer = false;
  private corked = false;

  constructor(
    private readonly ws: Pick<WebSocket, 'send' | 'bufferedAmount'>,
    private readonly options: SocketWriterOptions,
  ) {}

  /** True while `msg` frames must wait for the buffer to drain. */
  get blocked(): boolean {
    return this.blockedByBuffer;
  }

  /** Sends a `msg` frame; blocks further ones once the buffer reaches the high-water mark. */
  sendMsg(frame: string): void {
    this.cork();
    const highWater = this.options.highWaterBytes;
    this.ws.send(frame, (error) => {
      if (error || !this.blockedByBuffer) return;
      if (this.ws.bufferedAmount < highWater / 2) {
        this.blockedByBuffer = false;
        this.options.onDrained();
      }
    });
    if (this.ws.bufferedAmount >= highWater) this.blockedByBuffer = true;
  }

  /** Sends a frame the relay sends on its own (bounded per connection, not provoked by the client). */
  sendControl(frame: string): void {
    this.ws.send(frame);
  }

  /**
   * Sends a reply the client provoked, only if the buffer stays within the high-water mark with it.
   * Returns false, having queued nothing, when it does not fit.
   */
  reply(frame: string): boolean {
    if (this.ws.bufferedAmount + Buffer.byteLength(frame, 'utf8') > this.options.highWaterBytes) return false;
    this.ws.send(frame);
    return true;
  }

  private cork(): void {
    const socket = this.options.socket;
    if (!socket || this.corked) return;
    // A burst of msg frames leaves in one write (one syscall, fewer TCP segments).
    this.corked = true;
    socket.cork();
    process.nextTick(() => {
      this.corked = false;
      socket.uncork();
    });
  }
}
