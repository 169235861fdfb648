/**
 * Requests to RabbitMQ's management HTTP API, which reports what AMQP cannot (a queue's bindings,
 * its unacked count). Shared by the producer library (`following`) and the operator CLI.
 */

/** Splits credentials out of the URL into a Basic authorization header: fetch refuses URLs that carry them. */
export function managementRequest(baseUrl: string, path: string): { url: string; headers: Record<string, string> } {
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

/** The AMQP virtual host of a broker URL ('/' by default). */
export function vhostOf(rabbitmqUrl: string): string {
  const path = new URL(rabbitmqUrl).pathname;
  return path === '' || path === '/' ? '/' : decodeURIComponent(path.slice(1));
}
