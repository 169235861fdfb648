/**
 * What the CLI asks RabbitMQ's management HTTP API about a queue, which AMQP does not report: its
 * unacked count (sampled, every 5 s by default, so it lags) and its consumers, with which one is
 * active (single active consumer) and, from the relay's consumer tags, on which node.
 */
import { consumerTagNode } from '../amqp/inbox-consumer.js';
import { managementRequest } from '../amqp/management-request.js';
import { describeError, redactUrl } from './io.js';

export type UnackedCount = { known: true; unacked: number; source: 'management-api' } | { known: false; reason: string };

/** One consumer of a queue: `node` is the relay node that made it (from its tag), if a relay did. */
export interface QueueConsumer {
  tag: string;
  node: string | undefined;
  /** The one RabbitMQ delivers to (single active consumer); the others wait to take over. */
  active: boolean;
}

export interface QueueDetails {
  unacked: UnackedCount;
  /** Undefined when the management API did not answer (see `unacked.reason`). */
  consumers: QueueConsumer[] | undefined;
}

function consumersOf(body: unknown): QueueConsumer[] | undefined {
  const details = (body as { consumer_details?: unknown }).consumer_details;
  if (!Array.isArray(details)) return undefined;
  return details.flatMap((detail: unknown) => {
    const { consumer_tag: tag, active } = (detail ?? {}) as { consumer_tag?: unknown; active?: unknown };
    if (typeof tag !== 'string') return [];
    return [{ tag, node: consumerTagNode(tag), active: active === true }];
  });
}

export async function queueDetails(managementUrl: string | undefined, vhost: string, queue: string): Promise<QueueDetails> {
  const answer = await queueBody(managementUrl, vhost, queue);
  if (!answer.ok) return { unacked: { known: false, reason: answer.reason }, consumers: undefined };
  const unacked = (answer.body as { messages_unacknowledged?: unknown }).messages_unacknowledged;
  return {
    unacked:
      typeof unacked === 'number'
        ? { known: true, unacked, source: 'management-api' }
        : { known: false, reason: 'management API has no message counts for the queue yet (or metrics collection is disabled)' },
    consumers: consumersOf(answer.body),
  };
}

const TIMEOUT_MS = 5_000;

type QueueBody = { ok: true; body: unknown } | { ok: false; reason: string };

async function queueBody(managementUrl: string | undefined, vhost: string, queue: string): Promise<QueueBody> {
  if (managementUrl === undefined) return { ok: false, reason: 'RABBITMQ_MANAGEMENT_URL is empty (management API disabled)' };
  const { url, headers } = managementRequest(managementUrl, `/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`);
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (error) {
    return { ok: false, reason: `management API at ${redactUrl(managementUrl)} unreachable: ${describeError(error)}` };
  }
  if (response.status === 401) return { ok: false, reason: 'management API refused the credentials (401)' };
  if (response.status === 404) return { ok: false, reason: 'management API does not know the queue (404)' };
  if (!response.ok) return { ok: false, reason: `management API answered HTTP ${response.status}` };
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    return { ok: false, reason: 'management API answered something other than JSON' };
  }
  return { ok: true, body };
}
