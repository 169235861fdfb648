/**
 * The one thing the CLI asks RabbitMQ's management HTTP API: a queue's unacked count, which
 * AMQP does not report. The API's figures are sampled (every 5 s by default), so they lag.
 */
import { describeError, redactUrl } from './io.js';

export type UnackedCount = { known: true; unacked: number; source: 'management-api' } | { known: false; reason: string };

const TIMEOUT_MS = 5_000;

/** Splits credentials out of the URL: fetch refuses URLs that carry them. */
function request(baseUrl: string, path: string): { url: string; headers: Record<string, string> } {
  const url = new URL(baseUrl);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (url.username || url.password) {
    const credentials = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
    headers.authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
    url.username = '';
    url.password = '';
  }
  return { url: `${url.toString().replace(/\/$/, '')}${path}`, headers };
}

export async function queueUnacked(managementUrl: string | undefined, vhost: string, queue: string): Promise<UnackedCount> {
  if (managementUrl === undefined) return { known: false, reason: 'RABBITMQ_MANAGEMENT_URL is empty (management API disabled)' };
  const { url, headers } = request(managementUrl, `/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`);
  let response: Response;
  try {
    response = await fetch(url, { headers, signal: AbortSignal.timeout(TIMEOUT_MS) });
  } catch (error) {
    return { known: false, reason: `management API at ${redactUrl(managementUrl)} unreachable: ${describeError(error)}` };
  }
  if (response.status === 401) return { known: false, reason: 'management API refused the credentials (401)' };
  if (response.status === 404) return { known: false, reason: 'management API does not know the queue (404)' };
  if (!response.ok) return { known: false, reason: `management API answered HTTP ${response.status}` };
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    return { known: false, reason: 'management API answered something other than JSON' };
  }
  const unacked = (body as { messages_unacknowledged?: unknown }).messages_unacknowledged;
  if (typeof unacked !== 'number') {
    return { known: false, reason: 'management API has no message counts for the queue yet (or metrics collection is disabled)' };
  }
  return { known: true, unacked, source: 'management-api' };
}
