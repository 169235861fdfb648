/** A free TCP port on 127.0.0.1, for processes that must be told their port before they start. */
import { once } from 'node:events';
import net from 'node:net';

/**
 * A TCP port that was free on 127.0.0.1 a moment ago: the kernel picked it for a listener that is
 * closed again before this resolves. Another process can take it in between, so a caller that
 * binds it later must expect (rarely) EADDRINUSE.
 */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
