import type { ChannelModel } from 'amqplib';
import { afterEach, describe, expect, it } from 'vitest';
import { coalesceFrameWrites, frameWriteEvents } from '../../src/amqp/frame-writes.js';
import { RelayEvents } from '../../src/events.js';
import { createMetrics, type RelayMetrics } from '../../src/metrics/metrics.js';
import { sampleValue } from '../helpers/ops-prometheus.js';

/** A ChannelModel shaped as amqplib 2.3 builds one: `connection.stream` and `connection.muxer`. */
function amqplibLike(calls: string[]): { model: ChannelModel; runMuxer: () => void } {
  const muxer = {
    _readIncoming(this: unknown): void {
      calls.push(this === muxer ? 'mux' : 'mux with the wrong this');
    },
  };
  const stream = { cork: () => calls.push('cork'), uncork: () => calls.push('uncork') };
  const model = { connection: { stream, muxer } } as unknown as ChannelModel;
  return { model, runMuxer: () => muxer._readIncoming() };
}

describe('coalesceFrameWrites', () => {
  let metrics: RelayMetrics | undefined;
  afterEach(() => metrics?.close());

  it('corks the socket around every multiplexer run, on amqplib as checked', () => {
    const calls: string[] = [];
    const { model, runMuxer } = amqplibLike(calls);
    expect(coalesceFrameWrites(model)).toBe(true);
    runMuxer();
    runMuxer();
    expect(calls).toEqual(['cork', 'mux', 'uncork', 'cork', 'mux', 'uncork']);
  });

  it('falls back, emits batching-fallback and leaves the connection as it is when the internals differ', () => {
    let fallbacks = 0;
    const count = (): void => {
      fallbacks += 1;
    };
    frameWriteEvents.on('batching-fallback', count);
    try {
      const readIncoming = (): void => undefined;
      const muxer = { _readIncoming: readIncoming };
      const noMuxer = { connection: { stream: { cork: () => undefined, uncork: () => undefined } } } as unknown as ChannelModel;
      const noCork = { connection: { stream: {}, muxer } } as unknown as ChannelModel;
      const noConnection = {} as ChannelModel;
      expect([noMuxer, noCork, noConnection].map((model) => coalesceFrameWrites(model))).toEqual([false, false, false]);
      expect(fallbacks).toBe(3);
      expect(muxer._readIncoming).toBe(readIncoming);
    } finally {
      frameWriteEvents.off('batching-fallback', count);
    }
  });

  it('is counted in inbox_relay_amqp_frame_batching_fallback_total, from 0, and not after the metrics close', async () => {
    metrics = createMetrics(new RelayEvents(), { connections: () => 0, streams: () => 0, inflight: () => 0 });
    expect(sampleValue(await metrics.render(), 'inbox_relay_amqp_frame_batching_fallback_total')).toBe(0);
    coalesceFrameWrites({} as ChannelModel);
    coalesceFrameWrites({} as ChannelModel);
    coalesceFrameWrites(amqplibLike([]).model);
    expect(sampleValue(await metrics.render(), 'inbox_relay_amqp_frame_batching_fallback_total')).toBe(2);
    metrics.close();
    expect(frameWriteEvents.listenerCount('batching-fallback')).toBe(0);
  });
});
