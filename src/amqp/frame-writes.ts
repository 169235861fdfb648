/**
 * One socket write per turn of the event loop for an AMQP connection, instead of one per frame.
 *
 * amqplib queues each channel's frames in a buffer and a multiplexer moves them to the socket
 * once per turn (setImmediate), but it writes them one by one: with many users, each `basic.ack`
 * of a turn becomes a write system call of its own, and a TCP segment RabbitMQ reads on its own.
 * Corking the socket while the multiplexer runs makes them one write. This reaches into
 * amqplib's connection (`connection.muxer`, `connection.stream`), which is not public API; it was
 * checked against amqplib 2.3 (package.json pins `~2.3.1`). When those are not there (another
 * amqplib version), the connection is left as it is, and `frameWriteEvents` says so: the metric
 * `inbox_relay_amqp_frame_batching_fallback_total` counts it.
 */
import { EventEmitter } from 'node:events';
import type { ChannelModel } from 'amqplib';

/** What `coalesceFrameWrites` reports: a connection left writing its frames one by one. */
export interface FrameWriteEventMap {
  'batching-fallback': [];
}

/**
 * Process-wide, as amqplib's internals are the same for every connection of a process: the
 * metrics of every relay in the process listen here (src/metrics/metrics.ts).
 */
export const frameWriteEvents = new EventEmitter<FrameWriteEventMap>();

interface Corkable {
  cork(): void;
  uncork(): void;
}

interface AmqplibConnection {
  stream?: Partial<Corkable>;
  muxer?: { _readIncoming?: () => void };
}

/**
 * Corks the connection's socket around each multiplexer run. Returns false, and emits
 * `batching-fallback` on {@link frameWriteEvents}, when amqplib's internals are not as expected:
 * the connection then works as amqplib made it, one write per frame.
 */
export function coalesceFrameWrites(model: ChannelModel): boolean {
  const connection = (model as unknown as { connection?: AmqplibConnection }).connection;
  const stream = connection?.stream;
  const muxer = connection?.muxer;
  const original = muxer?._readIncoming;
  if (!muxer || typeof original !== 'function' || typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function') {
    frameWriteEvents.emit('batching-fallback');
    return false;
  }
  const socket = stream as Corkable;
  muxer._readIncoming = function (this: unknown) {
    socket.cork();
    try {
      original.call(muxer);
    } finally {
      socket.uncork();
    }
  };
  return true;
}
