/**
 * One socket write per turn of the event loop for an AMQP connection, instead of one per frame.
 *
 * amqplib queues each channel's frames in a buffer and a multiplexer moves them to the socket
 * once per turn (setImmediate), but it writes them one by one: with many users, each `basic.ack`
 * of a turn becomes a write system call of its own, and a TCP segment RabbitMQ reads on its own.
 * Corking the socket while the multiplexer runs makes them one write. This reaches into
 * amqplib's connection (`connection.muxer`, `connection.stream`), which is not public API: when
 * those are not there (another amqplib version), the connection is left as it is.
 */
import type { ChannelModel } from 'amqplib';

interface Corkable {
  cork(): void;
  uncork(): void;
}

interface AmqplibConnection {
  stream?: Partial<Corkable>;
  muxer?: { _readIncoming?: () => void };
}

/** Corks the connection's socket around each multiplexer run; false when amqplib's internals are not as expected. */
export function coalesceFrameWrites(model: ChannelModel): boolean {
  const connection = (model as unknown as { connection?: AmqplibConnection }).connection;
  const stream = connection?.stream;
  const muxer = connection?.muxer;
  const original = muxer?._readIncoming;
  if (!muxer || typeof original !== 'function' || typeof stream?.cork !== 'function' || typeof stream.uncork !== 'function') return false;
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
