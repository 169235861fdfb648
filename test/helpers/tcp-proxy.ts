/**
 * A TCP proxy for fault injection between the relay and a server: `freeze` makes every link go
 * silent without closing (a network partition or a frozen node: bytes are swallowed in both
 * directions, no FIN, no RST), `cut` destroys every link at once (a node killed), `thaw` lets
 * bytes through again. New connections made while frozen are accepted and swallowed too.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export class TcpProxy {
  private server: Server | undefined;
  private readonly links = new Set<Socket>();
  private frozen = false;
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  /** `amqp://…@127.0.0.1:<proxy port>` for a URL that points at the target. */
  urlFor(url: string): string {
    const parsed = new URL(url);
    parsed.hostname = '127.0.0.1';
    parsed.port = String(this.port);
    return parsed.toString();
  }

  async start(): Promise<void> {
    const server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.links.add(socket);
        socket.on('error', () => undefined);
        socket.on('close', () => {
          this.links.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.on('data', (chunk: Buffer) => {
        if (!this.frozen) upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (!this.frozen) client.write(chunk);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('proxy has no port');
    this.port = address.port;
    this.server = server;
  }

  get connections(): number {
    return this.links.size / 2;
  }

  freeze(): void {
    this.frozen = true;
  }

  thaw(): void {
    this.frozen = false;
  }

  /** Destroys every open link (each side sees the connection reset). */
  cut(): void {
    for (const socket of this.links) socket.destroy();
  }

  async stop(): Promise<void> {
    this.cut();
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
