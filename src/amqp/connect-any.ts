/**
 * Connects to one of the broker's nodes: the URLs are tried in turn, from a given one, each with a
 * bounded handshake, until one answers. amqplib itself connects to exactly one URL.
 */
import amqp from 'amqplib';
import type { ChannelModel } from 'amqplib';
import { errorMessage } from '../errors.js';

export interface ConnectAnyOptions {
  /** Index of the URL tried first (the others follow in order, wrapping around). */
  start?: number;
  /** The AMQP heartbeat asked for, in seconds, unless a URL sets its own `heartbeat`. */
  heartbeatS?: number | undefined;
  /** How long one node may take from the TCP connect to the open connection. */
  timeoutMs: number;
  clientProperties?: Record<string, unknown>;
}

/** `url` with `heartbeat=<s>` added, unless it names a heartbeat of its own. */
export function withHeartbeat(url: string, heartbeatS: number | undefined): string {
  if (heartbeatS === undefined) return url;
  const parsed = new URL(url);
  if (parsed.searchParams.has('heartbeat')) return url;
  parsed.searchParams.set('heartbeat', String(heartbeatS));
  return parsed.toString();
}

/** Host and port of a broker URL, for logs and errors (never the credentials). */
export function brokerHost(url: string): string {
  const parsed = new URL(url);
  return parsed.port ? `${parsed.hostname}:${parsed.port}` : parsed.hostname;
}

/** The first node (from `start`) that opens a connection, and its index; rejects naming each node's failure. */
export async function connectAny(urls: readonly string[], options: ConnectAnyOptions): Promise<{ model: ChannelModel; index: number }> {
  if (urls.length === 0) throw new Error('no RabbitMQ URL given');
  const failures: string[] = [];
  for (let attempt = 0; attempt < urls.length; attempt += 1) {
    const index = ((options.start ?? 0) + attempt) % urls.length;
    const url = urls[index]!;
    try {
      const model = await amqp.connect(withHeartbeat(url, options.heartbeatS), {
        timeout: options.timeoutMs,
        ...(options.clientProperties ? { clientProperties: options.clientProperties } : {}),
      });
      return { model, index };
    } catch (error) {
      failures.push(`${brokerHost(url)}: ${errorMessage(error)}`);
    }
  }
  throw new Error(urls.length === 1 ? failures[0] : `no RabbitMQ node answered (${failures.join('; ')})`);
}
