/**
 * Which relay node owns which inbox, as RabbitMQ itself sees it: the consumers of the bench's
 * queues from the management API (GET /api/consumers/<vhost>), each named by the node in its tag
 * (`inbox-relay.<NODE_ID>.<n>`) and marked active or waiting (single active consumer). The
 * management API samples its figures, so a reading can be a few seconds old: callers wait for
 * the state they expect, with a deadline.
 */
import { consumerTagNode } from '../../src/amqp/inbox-consumer.js';
import { inboxQueueName } from '../../src/amqp/topology.js';
import { waitUntil } from '../../src/wait-until.js';

export interface QueueConsumer {
  /** The relay node named in the tag, or the raw tag for a consumer that is not a relay's. */
  node: string;
  active: boolean;
}

/** Splits the credentials out of the URL: fetch refuses URLs that carry them. */
function managementRequest(baseUrl: string, path: string): { url: string; headers: Record<string, string> } {
  const url = new URL(baseUrl);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (url.username || url.password) {
    headers.authorization = `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString('base64')}`;
    url.username = '';
    url.password = '';
  }
  return { url: `${url.toString().replace(/\/$/, '')}${path}`, headers };
}

interface ApiConsumer {
  consumer_tag?: unknown;
  active?: unknown;
  activity_status?: unknown;
  queue?: { name?: unknown };
}

/** The consumers of every queue of the vhost, by queue name. */
export async function consumersByQueue(managementUrl: string, vhost: string): Promise<Map<string, QueueConsumer[]>> {
  const { url, headers } = managementRequest(managementUrl, `/api/consumers/${encodeURIComponent(vhost)}`);
  const response = await fetch(url, { headers, signal: AbortSignal.timeout(10_000) });
  if (!response.ok) throw new Error(`management API: HTTP ${response.status} for /api/consumers`);
  const body = (await response.json()) as ApiConsumer[];
  const byQueue = new Map<string, QueueConsumer[]>();
  for (const consumer of body) {
    const queue = consumer.queue?.name;
    const tag = consumer.consumer_tag;
    if (typeof queue !== 'string' || typeof tag !== 'string') continue;
    // `active` is there since RabbitMQ 3.8; `activity_status` says the same in words.
    const active = consumer.active === true || consumer.activity_status === 'single_active';
    const list = byQueue.get(queue) ?? [];
    list.push({ node: consumerTagNode(tag) ?? tag, active });
    byQueue.set(queue, list);
  }
  return byQueue;
}

export interface OwnershipCheck {
  ok: boolean;
  /** Queues whose consumers matched the expectation at the last reading. */
  matching: number;
  /** One queue that did not match, and what it had (for the report). */
  example: string | undefined;
}

/**
 * Waits until every user's queue has exactly one active consumer, of `owner`, and a waiting
 * consumer of each node in `waiting`, and nothing else.
 */
export async function waitForOwnership(
  managementUrl: string,
  vhost: string,
  users: readonly string[],
  expected: { owner: string; waiting: readonly string[] },
  timeoutMs: number,
): Promise<OwnershipCheck> {
  let last: OwnershipCheck = { ok: false, matching: 0, example: 'no reading' };
  const check = async (): Promise<boolean> => {
    let byQueue: Map<string, QueueConsumer[]>;
    try {
      byQueue = await consumersByQueue(managementUrl, vhost);
    } catch (error) {
      last = { ok: false, matching: 0, example: (error as Error).message };
      return false;
    }
    let matching = 0;
    let example: string | undefined;
    for (const user of users) {
      const consumers = byQueue.get(inboxQueueName(user)) ?? [];
      const describe = (): string =>
        `${inboxQueueName(user)}: ${consumers.map((c) => `${c.node} ${c.active ? 'active' : 'waiting'}`).join(', ') || 'no consumer'}`;
      const active = consumers.filter((c) => c.active);
      const fits =
        active.length === 1 &&
        active[0]?.node === expected.owner &&
        consumers.length === 1 + expected.waiting.length &&
        expected.waiting.every((node) => consumers.some((c) => !c.active && c.node === node));
      if (fits) matching += 1;
      else example ??= describe();
    }
    last = { ok: matching === users.length, matching, example };
    return last.ok;
  };
  await waitUntil(check, { timeoutMs, intervalMs: 1_000 });
  return last;
}
