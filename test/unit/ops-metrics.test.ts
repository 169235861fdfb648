import { afterEach, describe, expect, it } from 'vitest';
import { RelayEvents } from '../../src/events.js';
import { createMetrics, type MetricsProbes, type RelayMetrics } from '../../src/metrics/metrics.js';
import { exposedSeries, sampleValue } from '../helpers/ops-prometheus.js';

describe('createMetrics', () => {
  let metrics: RelayMetrics | undefined;
  afterEach(() => metrics?.close());

  function start(probes: Partial<MetricsProbes> = {}): RelayEvents {
    const events = new RelayEvents();
    metrics = createMetrics(events, { connections: () => 3, streams: () => 2, inflight: () => 7, ...probes });
    return events;
  }

  it('names this node in an info metric when given its id', async () => {
    start({ nodeId: 'relay-a-17' });
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_node_info', { node: 'relay-a-17' })).toBe(1);
  });

  it('counts handshakes by outcome and derives resume outcomes from them', async () => {
    const events = start();
    for (const outcome of ['new', 'new', 'resumed', 'not-recovered', 'reset', 'unauthenticated'] as const)
      events.emit('handshake', outcome);
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_handshakes_total', { outcome: 'new' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_handshakes_total', { outcome: 'unauthenticated' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_resumes_total', { outcome: 'recovered' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_resumes_total', { outcome: 'not-recovered' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_resumes_total', { outcome: 'reset' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_resumes_total', { outcome: 'new' })).toBeUndefined();
  });

  it('counts presence writes by request and outcome, and transitions by state and whether they were published', async () => {
    const events = start();
    events.emit('presence-write', 'apply', 'ok');
    events.emit('presence-write', 'apply', 'ok');
    events.emit('presence-write', 'sweep', 'failed');
    events.emit('presence-transition', 'online', 'published');
    events.emit('presence-transition', 'offline', 'failed');
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_presence_writes_total', { request: 'apply', outcome: 'ok' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_presence_writes_total', { request: 'sweep', outcome: 'failed' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_presence_transitions_total', { state: 'online', outcome: 'published' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_presence_transitions_total', { state: 'offline', outcome: 'failed' })).toBe(1);
  });

  it('counts delivered, redelivered, acked, nacked and dead-lettered messages', async () => {
    const events = start();
    events.emit('delivered', 1, 0);
    events.emit('delivered', 1, 1);
    events.emit('delivered', 3, 0);
    events.emit('acked', 4);
    events.emit('nacked', true);
    events.emit('nacked', false);
    events.emit('dead-lettered', 'client-nack');
    events.emit('dead-lettered', 'client-nack');
    events.emit('dead-lettered', 'nack-limit');
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_messages_delivered_total')).toBe(5);
    expect(sampleValue(text, 'inbox_relay_messages_redelivered_total')).toBe(1);
    expect(sampleValue(text, 'inbox_relay_messages_acked_total')).toBe(4);
    expect(sampleValue(text, 'inbox_relay_messages_nacked_total', { requeue: 'true' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_messages_nacked_total', { requeue: 'false' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_messages_dead_lettered_total', { reason: 'client-nack' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_messages_dead_lettered_total', { reason: 'nack-limit' })).toBe(1);
  });

  it("counts refused replay headers by reason, and the unrouted mover's declarations and waits on its cap", async () => {
    const events = start();
    events.emit('replay-refused', 'no-seal');
    events.emit('replay-refused', 'bad-seal');
    events.emit('replay-refused', 'bad-seal');
    events.emit('unrouted-provisioned');
    events.emit('unrouted-provisioned');
    events.emit('unrouted-provision-wait', 250);
    events.emit('dead-lettered', 'unroutable-inbox-full');
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_replay_headers_refused_total', { reason: 'no-seal' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_replay_headers_refused_total', { reason: 'bad-seal' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_unrouted_provisioned_total')).toBe(2);
    expect(sampleValue(text, 'inbox_relay_unrouted_provision_waits_total')).toBe(1);
    expect(sampleValue(text, 'inbox_relay_messages_dead_lettered_total', { reason: 'unroutable-inbox-full' })).toBe(1);
  });

  it('observes delivery latency in seconds, clamping clock skew to zero', async () => {
    const events = start();
    events.emit('delivery-latency', 40);
    events.emit('delivery-latency', 2_000);
    events.emit('delivery-latency', -5);
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_delivery_latency_seconds_count')).toBe(3);
    expect(sampleValue(text, 'inbox_relay_delivery_latency_seconds_sum')).toBeCloseTo(2.04, 6);
    expect(sampleValue(text, 'inbox_relay_delivery_latency_seconds_bucket', { le: '0.005' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_delivery_latency_seconds_bucket', { le: '0.05' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_delivery_latency_seconds_bucket', { le: '1' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_delivery_latency_seconds_bucket', { le: '2.5' })).toBe(3);
  });

  it('reads connections, streams and in-flight messages from the probes at scrape time', async () => {
    let connections = 3;
    start({ connections: () => connections });
    expect(sampleValue(await metrics!.render(), 'inbox_relay_connections')).toBe(3);
    connections = 11;
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_connections')).toBe(11);
    expect(sampleValue(text, 'inbox_relay_streams')).toBe(2);
    expect(sampleValue(text, 'inbox_relay_inflight_messages')).toBe(7);
  });

  it('keeps the last value of a probe that throws, and still renders', async () => {
    let fail = false;
    start({
      inflight: () => {
        if (fail) throw new Error('boom');
        return 5;
      },
    });
    expect(sampleValue(await metrics!.render(), 'inbox_relay_inflight_messages')).toBe(5);
    fail = true;
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_connections')).toBe(3);
    expect(sampleValue(text, 'inbox_relay_inflight_messages')).toBe(5);
  });

  it('tracks breaker state from events and from the probe, and counts transitions', async () => {
    let states: Record<string, 0 | 1 | 2> = {};
    const events = start({ breakerStates: () => states });
    events.emit('breaker', 'redis', 'open');
    events.emit('breaker', 'redis', 'half-open');
    events.emit('breaker', 'redis', 'open');
    let text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_breaker_state', { breaker: 'redis' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_breaker_transitions_total', { breaker: 'redis', state: 'open' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_breaker_transitions_total', { breaker: 'redis', state: 'half-open' })).toBe(1);
    states = { redis: 0, amqp: 1 };
    text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_breaker_state', { breaker: 'redis' })).toBe(0);
    expect(sampleValue(text, 'inbox_relay_breaker_state', { breaker: 'amqp' })).toBe(1);
  });

  it('counts admission refusals by reason and bounds the number of reasons', async () => {
    const events = start();
    events.emit('refused', 'max-connections');
    events.emit('refused', 'max-connections');
    for (let i = 0; i < 40; i += 1) events.emit('refused', `reason-${i}`);
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_admission_refusals_total', { reason: 'max-connections' })).toBe(2);
    const reasons = text.split('\n').filter((line) => line.startsWith('inbox_relay_admission_refusals_total{'));
    expect(reasons.length).toBeLessThanOrEqual(17);
    expect(sampleValue(text, 'inbox_relay_admission_refusals_total', { reason: 'other' })).toBeGreaterThan(0);
  });

  it('counts AMQP and Redis reconnects only after a loss', async () => {
    const events = start();
    events.emit('amqp-connection', 'connected');
    events.emit('amqp-connection', 'connected');
    events.emit('amqp-connection', 'disconnected');
    events.emit('amqp-connection', 'connected');
    events.emit('redis-connection', 'connected');
    events.emit('redis-connection', 'disconnected');
    // Failed attempts while down are not further losses.
    events.emit('redis-connection', 'disconnected');
    events.emit('redis-connection', 'disconnected');
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_amqp_connections')).toBe(2);
    expect(sampleValue(text, 'inbox_relay_amqp_disconnects_total')).toBe(1);
    expect(sampleValue(text, 'inbox_relay_amqp_reconnects_total')).toBe(1);
    expect(sampleValue(text, 'inbox_relay_redis_connections')).toBe(0);
    expect(sampleValue(text, 'inbox_relay_redis_disconnects_total')).toBe(1);
    expect(sampleValue(text, 'inbox_relay_redis_reconnects_total')).toBe(0);
    events.emit('redis-connection', 'connected');
    const after = await metrics!.render();
    expect(sampleValue(after, 'inbox_relay_redis_connections')).toBe(1);
    expect(sampleValue(after, 'inbox_relay_redis_reconnects_total')).toBe(1);
  });

  it('shows the broker blocked state and counts blockings', async () => {
    const events = start();
    expect(sampleValue(await metrics!.render(), 'inbox_relay_broker_blocked')).toBe(0);
    events.emit('broker-blocked', true);
    events.emit('broker-blocked', true);
    expect(sampleValue(await metrics!.render(), 'inbox_relay_broker_blocked')).toBe(1);
    events.emit('broker-blocked', false);
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_broker_blocked')).toBe(0);
    expect(sampleValue(text, 'inbox_relay_broker_blocked_total')).toBe(1);
  });

  it('counts closes by code, lost consumers, lost epochs and moved unrouted messages', async () => {
    const events = start();
    events.emit('connection-closed', 1012);
    events.emit('connection-closed', 1012);
    events.emit('connection-closed', 4001);
    events.emit('consumer-lost', 'channel closed');
    events.emit('epoch-lost');
    events.emit('unrouted-moved');
    const text = await metrics!.render();
    expect(sampleValue(text, 'inbox_relay_connections_closed_total', { code: '1012' })).toBe(2);
    expect(sampleValue(text, 'inbox_relay_connections_closed_total', { code: '4001' })).toBe(1);
    expect(sampleValue(text, 'inbox_relay_consumers_lost_total')).toBe(1);
    expect(sampleValue(text, 'inbox_relay_epochs_lost_total')).toBe(1);
    expect(sampleValue(text, 'inbox_relay_unrouted_moved_total')).toBe(1);
  });

  it('exposes the default Node.js metrics under the prefix, event-loop lag included', async () => {
    start();
    const series = exposedSeries(await metrics!.render());
    expect(series.has('inbox_relay_nodejs_eventloop_lag_seconds')).toBe(true);
    expect(series.has('inbox_relay_nodejs_eventloop_lag_p99_seconds')).toBe(true);
    expect(series.has('inbox_relay_process_cpu_seconds_total')).toBe(true);
    expect([...series].filter((name) => !name.startsWith('inbox_relay_'))).toEqual([]);
  });

  it('never lets a metric error reach the emitter', () => {
    const events = start();
    // A label value prom-client cannot take would throw inside the listener.
    expect(() =>
      events.emit('dead-lettered', {
        toString: () => {
          throw new Error('bad');
        },
      } as unknown as string),
    ).not.toThrow();
  });

  it('stops listening on close, and close is idempotent', async () => {
    const events = start();
    const listening = events.listenerCount('handshake');
    expect(listening).toBe(1);
    metrics!.close();
    metrics!.close();
    expect(events.listenerCount('handshake')).toBe(0);
    expect(events.listenerCount('delivered')).toBe(0);
    expect(metrics!.contentType).toMatch(/^text\/plain/);
  });
});
