/**
 * The metrics of what producers use beside publishing to RabbitMQ: the HTTP publish API, delivery
 * receipts and presence. Part of one relay node's registry (metrics.ts), with the same rules:
 * names start with `inbox_relay_`, label values are bounded.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { BoundedLabel } from './bounded-labels.js';
import type { Listener } from './metrics.js';

type ProducerEvent =
  'publish-api-request' | 'publish-api-messages' | 'receipts-published' | 'receipts-failed' | 'presence-write' | 'presence-transition';

/** Creates the metrics in `registers` (full names from `name`) and returns the listeners that count them. */
export function producerFacingMetrics(registers: Registry[], name: (suffix: string) => string): { [K in ProducerEvent]: Listener<K> } {
  const publishStatuses = new BoundedLabel(16);
  const publishRequests = new Counter({
    name: name('publish_api_requests_total'),
    help: 'Requests to the HTTP publish API (PUBLISH_PORT), by HTTP status.',
    labelNames: ['status'],
    registers,
  });
  const publishDuration = new Histogram({
    name: name('publish_api_request_duration_seconds'),
    help: 'Time from an HTTP publish request to its answer (202: RabbitMQ confirmed every message).',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const publishOutcomes = new BoundedLabel(16);
  const publishMessages = new Counter({
    name: name('publish_api_messages_total'),
    help: 'Messages of HTTP publish requests, by outcome: accepted, inbox-full, broker-blocked, timeout, unavailable.',
    labelNames: ['outcome'],
    registers,
  });
  const receipts = new Counter({
    name: name('receipts_total'),
    help: 'Delivery receipts published to inbox.receipts, by result: confirmed, or failed (not confirmed; kept and published again).',
    labelNames: ['result'] as const,
    registers,
  });
  const presenceWrites = new Counter({
    name: name('presence_writes_total'),
    help: 'Presence script calls to Redis (apply: puts and removes of one turn; sweep: expired entries), by outcome (ok, failed).',
    labelNames: ['request', 'outcome'] as const,
    registers,
  });
  const presenceTransitions = new Counter({
    name: name('presence_transitions_total'),
    help: 'Users this node saw go online or offline, by whether the event reached inbox.presence (published, failed).',
    labelNames: ['state', 'outcome'] as const,
    registers,
  });

  return {
    'publish-api-request': (status, seconds) => {
      publishRequests.inc({ status: publishStatuses.value(status) });
      publishDuration.observe(seconds);
    },
    'publish-api-messages': (outcome, count) => publishMessages.inc({ outcome: publishOutcomes.value(outcome) }, count),
    'receipts-published': (count) => receipts.inc({ result: 'confirmed' }, count),
    'receipts-failed': (count) => receipts.inc({ result: 'failed' }, count),
    'presence-write': (request, outcome) => presenceWrites.inc({ request, outcome }),
    'presence-transition': (state, outcome) => presenceTransitions.inc({ state, outcome }),
  };
}
