/** A Redis server of the test's own (child process, own port, AOF in a temp dir), to stop and pause freely. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { freePort } from '../../src/process/free-port.js';
import { waitUntil } from '../../src/wait-until.js';

export class OwnRedis {
  private child: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'inbox-relay-redis-'));
  port = 0;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', this.dir], {
      stdio: 'ignore',
    });
    const client = new Redis(this.url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    const answers = async (): Promise<boolean> => {
      try {
        await client.connect();
        await client.ping();
        return true;
      } catch {
        return false;
      } finally {
        client.disconnect();
      }
    };
    await waitUntil(answers, { timeoutMs: 10_000, intervalMs: 100, what: `redis-server to answer on port ${this.port}` });
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }

  /** CLIENT PAUSE on this server: every client's commands wait for `ms`. */
  async pause(ms: number): Promise<void> {
    const client = new Redis(this.url);
    await client.call('CLIENT', 'PAUSE', String(ms), 'ALL');
    client.disconnect();
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
