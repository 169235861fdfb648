/** A Redis server of the test's own (child process, own port, AOF in a temp dir), to stop and pause freely. */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Redis } from 'ioredis';
import { freePort } from '../../src/process/free-port.js';
import { waitUntil } from '../../src/wait-until.js';

/**
 * Relay settings for a test that takes its Redis away: commands time out in 300 ms and the store
 * breaker opens after two failures within a second, so the outage shows at once.
 */
export const QUICK_REDIS_BREAKER = {
  REDIS_COMMAND_TIMEOUT_MS: '300',
  REDIS_BREAKER_TIMEOUT_MS: '500',
  BREAKER_RESET_MS: '1000',
  BREAKER_VOLUME: '2',
  BREAKER_WINDOW_MS: '1000',
} as const;

export class OwnRedis {
  private child: ChildProcess | undefined;
  private readonly dir = mkdtempSync(join(tmpdir(), 'inbox-relay-redis-'));
  port = 0;

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** `fsyncAlways`: every write is on disk before Redis answers, so a copy of the file is exact. */
  async start(options: { fsyncAlways?: boolean } = {}): Promise<void> {
    if (this.port === 0) this.port = await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'yes', '--dir', this.dir];
    if (options.fsyncAlways) args.push('--appendfsync', 'always');
    this.child = spawn('redis-server', args, { stdio: 'ignore' });
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

  /** Copies the append-only files as they are now (see `killAndRestoreFiles`). */
  copyFiles(): string {
    const copy = mkdtempSync(join(tmpdir(), 'inbox-relay-redis-copy-'));
    cpSync(this.dir, copy, { recursive: true });
    return copy;
  }

  /**
   * SIGKILLs the server and puts back the files `copyFiles` took: when it starts again it loads
   * that older state, and every write since is gone (a power loss with `appendfsync everysec`, or
   * a failover to a lagging replica, does the same to the store).
   */
  async killAndRestoreFiles(copy: string): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child && child.exitCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
    cpSync(copy, this.dir, { recursive: true });
    rmSync(copy, { recursive: true, force: true });
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
