/**
 * Prometheus metrics of one relay node, in a registry of their own (never prom-client's global
 * one, so that several relays in one process, as in tests, do not collide).
 *
 * This module guarantees:
 * - it only listens to `RelayEvents` (and to the process-wide `frameWriteEvents` of the AMQP
 *   connections) and reads `MetricsProbes` at scrape time: nothing in the delivery path waits for
 *   it, and a listener never throws into an `emit` (errors are dropped);
 * - label values that come from reasons, codes or names are bounded (see BoundedLabel; close
 *   codes map to a fixed set, closeCodeLabel);
 * - every name starts with `inbox_relay_`, the default Node.js metrics included
 *   (`inbox_relay_nodejs_eventloop_lag_p99_seconds`, `inbox_relay_process_cpu_seconds_total`, ...).
 * The metrics of the publish API, receipts and presence are in producer-metrics.ts.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { frameWriteEvents } from '../amqp/frame-writes.js';
import type { BreakerState, HandshakeOutcome, RelayEventMap, RelayEvents } from '../events.js';
import { BoundedLabel, closeCodeLabel } from './bounded-labels.js';
import { producerFacingMetrics } from './producer-metrics.js';

export const METRICS_PREFIX = 'inbox_relay_';

/** Breaker states as the `inbox_relay_breaker_state` gauge shows them. */
export const BREAKER_STATE_VALUE: Readonly<Record<BreakerState, 0 | 1 | 2>> = { closed: 0, 'half-open': 1, open: 2 };

/** Buckets of the delivery latency (publish timestamp to client ack), in seconds. */
export const DELIVERY_LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800];

/** What the relay is now, read at scrape time. Each callback must be cheap and synchronous. */
export interface MetricsProbes {
  /** Open client WebSocket connections on this node. */
  connections(): number;
  /** User streams on this node (one RabbitMQ consumer each). */
  streams(): number;
  /** Messages RabbitMQ delivered to this node and no client acked yet, across all streams. */
  inflight(): number;
  /** Circuit breakers by name: 0 closed, 1 half-open, 2 open. Breaker events are counted without it. */
  breakerStates?(): Readonly<Record<string, 0 | 1 | 2>>;
  /** This node's id (NODE_ID), exported as `inbox_relay_node_info{node="<id>"} 1`. */
  nodeId?: string;
}

export interface RelayMetrics {
  /** The Content-Type header for `render()`'s text. */
  readonly contentType: string;
  /** The Prometheus text exposition of every metric. */
  render(): Promise<string>;
  /** Stops listening to the events and empties the registry. Idempotent. */
  close(): void;
}

const RESUME_OUTCOMES: Partial<Record<HandshakeOutcome, string>> = {
  resumed: 'recovered',
  'not-recovered': 'not-recovered',
  reset: 'reset',
};

export type Listener<K extends keyof RelayEventMap> = (...args: RelayEventMap[K]) => void;

/** Builds the node's metrics, listening to `events` from now on. */
export function createMetrics(events: RelayEvents, probes: MetricsProbes): RelayMetrics {
  const registry = new Registry();
  const registers = [registry];
  const name = (suffix: string): string => `${METRICS_PREFIX}${suffix}`;
  collectDefaultMetrics({ register: registry, prefix: METRICS_PREFIX, eventLoopMonitoringPrecision: 10 });

  const read = (probe: () => number): number | undefined => {
    try {
      const value = probe();
      return Number.isFinite(value) ? value : undefined;
    } catch {
      return undefined;
    }
  };
  const probed = (suffix: string, help: string, probe: () => number): void => {
    new Gauge({
      name: name(suffix),
      help,
      registers,
      collect() {
        const value = read(probe);
        if (value !== undefined) this.set(value);
      },
    });
  };
  probed('connections', 'Open client WebSocket connections.', () => probes.connections());
  probed('streams', 'User streams on this node (one RabbitMQ consumer each).', () => probes.streams());
  probed('inflight_messages', 'Messages delivered by RabbitMQ to this node and not yet acked by a client.', () => probes.inflight());

  if (probes.nodeId !== undefined) {
    // An info metric: one series whose label names the node, to join other series with by instance.
    new Gauge({
      name: name('node_info'),
      help: 'Always 1; the node label is this relay node id (NODE_ID).',
      labelNames: ['node'],
      registers,
    }).set({ node: probes.nodeId }, 1);
  }

  const breakerNames = new BoundedLabel(16);
  const breakerState = new Gauge({
    name: name('breaker_state'),
    help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open.',
    labelNames: ['breaker'],
    registers,
    collect() {
      if (!probes.breakerStates) return;
      let states: Readonly<Record<string, number>>;
      try {
        states = probes.breakerStates();
      } catch {
        return;
      }
      for (const [breaker, value] of Object.entries(states)) this.set({ breaker: breakerNames.value(breaker) }, value);
    },
  });
  const breakerTransitions = new Counter({
    name: name('breaker_transitions_total'),
    help: 'Circuit breaker transitions, by breaker and the state entered.',
    labelNames: ['breaker', 'state'],
    registers,
  });

  const handshakes = new Counter({
    name: name('handshakes_total'),
    help: 'WebSocket handshakes (upgrade and hello), by outcome.',
    labelNames: ['outcome'],
    registers,
  });
  const resumes = new Counter({
    name: name('resumes_total'),
    help: 'Resume requests by outcome: recovered, not-recovered (history did not cover the gap), reset (epoch gone).',
    labelNames: ['outcome'],
    registers,
  });
  const closed = new Counter({
    name: name('connections_closed_total'),
    help: 'Client connections closed, by WebSocket close code (codes the relay does not use: client-other).',
    labelNames: ['code'],
    registers,
  });
  const delivered = new Counter({
    name: name('messages_delivered_total'),
    help: 'msg frames sent to clients (one per connection).',
    registers,
  });
  const redelivered = new Counter({
    name: name('messages_redelivered_total'),
    help: 'msg frames sent with redelivered:true (the client may have seen them before).',
    registers,
  });
  const acked = new Counter({ name: name('messages_acked_total'), help: 'Messages acked to RabbitMQ after a client ack.', registers });
  const nacked = new Counter({
    name: name('messages_nacked_total'),
    help: 'Client nacks, by whether the client asked for a requeue.',
    labelNames: ['requeue'],
    registers,
  });
  const deadReasons = new BoundedLabel(16);
  const deadLettered = new Counter({
    name: name('messages_dead_lettered_total'),
    help: 'Messages the relay dead-lettered to inbox.dead, by reason.',
    labelNames: ['reason'],
    registers,
  });
  const deadLetterFallbacks = new Counter({
    name: name('dead_letter_fallbacks_total'),
    help: 'Dead letters whose copy with x-inbox-relay-reason could not be published, rejected plainly instead (x-death reason rejected), by reason.',
    labelNames: ['reason'],
    registers,
  });
  const latency = new Histogram({
    name: name('delivery_latency_seconds'),
    help: 'Time from the producer timestamp to the client ack, per message acked to RabbitMQ.',
    buckets: DELIVERY_LATENCY_BUCKETS,
    registers,
  });
  const consumersLost = new Counter({
    name: name('consumers_lost_total'),
    help: 'User stream consumers lost (channel closed, cancelled, store unavailable) and restarted.',
    registers,
  });
  const epochsLost = new Counter({
    name: name('epochs_lost_total'),
    help: 'Times a user stream found its numbering gone from the state store (clients get reset).',
    registers,
  });
  const storeFailovers = new Counter({
    name: name('store_failovers_total'),
    help: 'Times the state store connection came back on a different Redis primary (a Sentinel failover).',
    registers,
  });
  const unroutedMoved = new Counter({
    name: name('unrouted_moved_total'),
    help: 'Messages moved from inbox.unrouted into a newly provisioned inbox.',
    registers,
  });
  const unroutedProvisioned = new Counter({
    name: name('unrouted_provisioned_total'),
    help: 'Inboxes the unrouted mover declared (capped by UNROUTED_PROVISION_RATE_PER_SEC).',
    registers,
  });
  const unroutedProvisionWaits = new Counter({
    name: name('unrouted_provision_waits_total'),
    help: 'Times the unrouted mover waited for UNROUTED_PROVISION_RATE_PER_SEC before declaring an inbox (the messages stay queued).',
    registers,
  });
  const replayRefused = new Counter({
    name: name('replay_headers_refused_total'),
    help: 'Messages with the replay header but no valid seal (REPLAY_KEY), numbered by their messageId instead, by reason.',
    labelNames: ['reason'],
    registers,
  });
  const refusalReasons = new BoundedLabel(16);
  const refusals = new Counter({
    name: name('admission_refusals_total'),
    help: 'Connections or requests refused by admission control, by reason.',
    labelNames: ['reason'],
    registers,
  });

  const link = (service: 'amqp' | 'redis', help: string) => {
    const connected = new Gauge({ name: name(`${service}_connections`), help: `${help} connections open.`, registers });
    const disconnects = new Counter({ name: name(`${service}_disconnects_total`), help: `${help} connections lost.`, registers });
    const reconnects = new Counter({
      name: name(`${service}_reconnects_total`),
      help: `${help} connections re-established after a loss.`,
      registers,
    });
    let open = 0;
    let lost = 0;
    return (state: 'connected' | 'disconnected'): void => {
      if (state === 'connected') {
        open += 1;
        if (lost > 0) {
          lost -= 1;
          reconnects.inc();
        }
      } else {
        // A close while nothing is open is a failed reconnect attempt (ioredis reports each one), not a loss.
        if (open === 0) return;
        open -= 1;
        lost += 1;
        disconnects.inc();
      }
      connected.set(open);
    };
  };
  const amqp = link('amqp', 'AMQP');
  const redis = link('redis', 'Redis');

  const blocked = new Gauge({
    name: name('broker_blocked'),
    help: '1 while RabbitMQ blocks the relay publishing connection (resource alarm).',
    registers,
  });
  blocked.set(0);
  const blockedTotal = new Counter({
    name: name('broker_blocked_total'),
    help: 'Times RabbitMQ started blocking the relay publisher.',
    registers,
  });
  let isBlocked = false;

  const frameBatchingFallbacks = new Counter({
    name: name('amqp_frame_batching_fallback_total'),
    help: 'AMQP connections writing one frame per socket write because amqplib internals differ from the version checked (src/amqp/frame-writes.ts).',
    registers,
  });
  const onFrameBatchingFallback = (): void => {
    try {
      frameBatchingFallbacks.inc();
    } catch {
      // Metrics are best effort.
    }
  };
  frameWriteEvents.on('batching-fallback', onFrameBatchingFallback);

  const clusterDelivered = new Counter({
    name: name('cluster_deliveries_total'),
    help: 'Messages sent to connections on this node that another node numbered (its consumer was the active one).',
    registers,
  });
  const acksForwarded = new Counter({
    name: name('cluster_acks_forwarded_total'),
    help: "Cumulative acks forwarded to a user's other nodes (sent) or taken from one (received).",
    labelNames: ['direction'] as const,
    registers,
  });
  const ownershipChanges = new Counter({
    name: name('cluster_ownership_changes_total'),
    help: "Times a consumer of this node became the active one for a user's queue (it received a delivery first).",
    registers,
  });
  const heals = new Counter({
    name: name('cluster_heals_total'),
    help: "Times this node found itself behind another node's numbering (a lost notification) and read the gap from history.",
    registers,
  });
  // Created with the bus's first state: a node without a bus (no REDIS_URL) has no such series,
  // so that an alert on it never fires for a single in-memory node.
  let busUp: Gauge | undefined;
  const setBusUp = (up: boolean): void => {
    busUp ??= new Gauge({
      name: name('node_bus_up'),
      help: 'Whether the node bus (Redis pub/sub between relay nodes) is connected: 1 yes, 0 no.',
      registers,
    });
    busUp.set(up ? 1 : 0);
  };

  const listeners: { [K in keyof RelayEventMap]: Listener<K> } = {
    ...producerFacingMetrics(registers, name),
    handshake: (outcome) => {
      handshakes.inc({ outcome });
      const resume = RESUME_OUTCOMES[outcome];
      if (resume) resumes.inc({ outcome: resume });
    },
    'connection-closed': (code) => closed.inc({ code: closeCodeLabel(code) }),
    delivered: (count, again) => {
      delivered.inc(count);
      if (again > 0) redelivered.inc(again);
    },
    acked: (count) => acked.inc(count),
    'delivery-latency': (ms) => latency.observe(Math.max(0, ms) / 1000),
    nacked: (requeue) => nacked.inc({ requeue: String(requeue) }),
    'dead-lettered': (reason) => deadLettered.inc({ reason: deadReasons.value(reason) }),
    'dead-letter-fallback': (reason) => deadLetterFallbacks.inc({ reason: deadReasons.value(reason) }),
    'consumer-lost': () => consumersLost.inc(),
    'epoch-lost': () => epochsLost.inc(),
    'store-failover': () => storeFailovers.inc(),
    'unrouted-moved': () => unroutedMoved.inc(),
    'unrouted-provisioned': () => unroutedProvisioned.inc(),
    'unrouted-provision-wait': () => unroutedProvisionWaits.inc(),
    'replay-refused': (reason) => replayRefused.inc({ reason }),
    breaker: (breaker, state) => {
      const label = breakerNames.value(breaker);
      breakerTransitions.inc({ breaker: label, state });
      breakerState.set({ breaker: label }, BREAKER_STATE_VALUE[state] ?? 0);
    },
    refused: (reason) => refusals.inc({ reason: refusalReasons.value(reason) }),
    'amqp-connection': (state) => amqp(state),
    'redis-connection': (state) => redis(state),
    'cluster-delivered': (count) => clusterDelivered.inc(count),
    'cluster-ack-forwarded': (direction) => acksForwarded.inc({ direction }),
    'ownership-gained': () => ownershipChanges.inc(),
    'cluster-healed': () => heals.inc(),
    'node-bus': (state) => setBusUp(state === 'connected'),
    'broker-blocked': (value) => {
      if (value && !isBlocked) blockedTotal.inc();
      isBlocked = value;
      blocked.set(value ? 1 : 0);
    },
  };

  // A listener runs inside `emit`, so in the delivery path: it must never throw there.
  const attached: [keyof RelayEventMap, (...args: never[]) => void][] = [];
  for (const event of Object.keys(listeners) as (keyof RelayEventMap)[]) {
    const listener = listeners[event] as (...args: unknown[]) => void;
    const safe = (...args: unknown[]): void => {
      try {
        listener(...args);
      } catch {
        // Metrics are best effort; a broken metric must not break delivery.
      }
    };
    events.on(event, safe);
    attached.push([event, safe]);
  }

  let closedOnce = false;
  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    close() {
      if (closedOnce) return;
      closedOnce = true;
      for (const [event, listener] of attached) events.off(event, listener);
      frameWriteEvents.off('batching-fallback', onFrameBatchingFallback);
      registry.clear();
    },
  };
}
