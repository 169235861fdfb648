/**
 * The relay under test, as a child process (`node dist/src/main.js`), configured only through
 * its environment (src/config.ts), with the bench's memory probe preloaded (relay-probe.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { QueueType } from '../../src/config.js';
import { rssBytes } from './proc.js';
import { sleep, withTimeout } from '../lib/time.js';

export interface RelayMemory {
  /** VmRSS from /proc. */
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  gcRan: boolean;
}

export interface RelayProcessOptions {
  rabbitmqUrl: string;
  redisUrl: string;
  redisKeyPrefix: string;
  jwtSecret: string;
  queueType: QueueType;
  window: number;
  logFile: string;
  /** e.g. --cpu-prof flags. */
  nodeArgs?: string[];
  /** Called with the child's pid as soon as it is spawned (the bench raises its priority). */
  onSpawn?: (pid: number) => void;
  env?: Record<string, string>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = get({ host: '127.0.0.1', port, path, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (body.length < 500) body += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
      res.on('error', () => resolve({ status: 0, body: '' }));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', (error) => resolve({ status: 0, body: error.message }));
  });
}

/** Relay children still running: killed if the bench exits without stopping them (they are detached). */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export class RelayProcess {
  private probeId = 0;
  private readonly exited: Promise<number | null>;

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly adminPort: number,
    readonly logFile: string,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  static async start(options: RelayProcessOptions): Promise<RelayProcess> {
    const [port, adminPort] = [await freePort(), await freePort()];
    const main = fileURLToPath(new URL('../../src/main.js', import.meta.url));
    const probe = fileURLToPath(new URL('../relay-probe.js', import.meta.url));
    const log = openSync(options.logFile, 'a');
    const child = spawn(process.execPath, [...(options.nodeArgs ?? []), '--expose-gc', '--import', probe, main], {
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        RABBITMQ_URL: options.rabbitmqUrl,
        REDIS_URL: options.redisUrl,
        REDIS_KEY_PREFIX: options.redisKeyPrefix,
        JWT_SECRET: options.jwtSecret,
        HOST: '127.0.0.1',
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
        QUEUE_TYPE: options.queueType,
        WINDOW_DEFAULT: String(options.window),
        WINDOW_MAX: String(options.window),
        LOG_LEVEL: 'warn',
        // BENCH_RELAY_ENV='{"STORE_ACK_INTERVAL_MS":"0"}' tries relay settings without code changes.
        ...(process.env.BENCH_RELAY_ENV ? (JSON.parse(process.env.BENCH_RELAY_ENV) as Record<string, string>) : {}),
        ...options.env,
      },
      stdio: ['ignore', log, log, 'ipc'],
      // Its own session, so its own scheduling autogroup: on Linux with autogroups, processes of
      // one session share one CPU share, and the relay would otherwise share the bench's.
      detached: true,
    });
    live.add(child);
    child.once('exit', () => live.delete(child));
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    closeSync(log);
    const relay = new RelayProcess(child, port, adminPort, options.logFile);
    let exitCode: number | null | undefined;
    void relay.exited.then((code) => {
      exitCode = code;
    });
    const deadline = Date.now() + 60_000;
    let last = { status: 0, body: '' };
    while (Date.now() < deadline) {
      if (exitCode !== undefined) throw new Error(`relay exited with ${exitCode} at start:\n${relay.logTail()}`);
      last = await httpGet(adminPort, '/readyz');
      if (last.status === 200) return relay;
      await sleep(100);
    }
    await relay.stop();
    throw new Error(`relay not ready within 60 s (last /readyz: ${last.status} ${last.body}):\n${relay.logTail()}`);
  }

  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '';
    }
  }

  private ask<T>(probe: string, extra: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const id = ++this.probeId;
    const answer = new Promise<T>((resolve, reject) => {
      const onMessage = (message: { probe?: string; id?: number; error?: string }): void => {
        if (message.probe !== probe || message.id !== id) return;
        this.child.off('message', onMessage);
        if (message.error) reject(new Error(`relay probe ${probe}: ${message.error}`));
        else resolve(message as T);
      };
      this.child.on('message', onMessage);
    });
    this.child.send({ probe, id, ...extra });
    return withTimeout(answer, timeoutMs, `relay probe ${probe}`);
  }

  /** The relay's memory: VmRSS and, through the probe, the V8 heap (after a full GC when `gc`). */
  async memory(gc = true): Promise<RelayMemory> {
    const heap = await this.ask<Omit<RelayMemory, 'rss'>>('memory', { gc });
    return { heapUsed: heap.heapUsed, heapTotal: heap.heapTotal, external: heap.external, arrayBuffers: heap.arrayBuffers, gcRan: heap.gcRan, rss: rssBytes(this.pid) ?? 0 };
  }

  /** Starts the V8 CPU profiler in the relay (the profiler behind --cpu-prof). */
  async startProfile(): Promise<void> {
    await this.ask('profile-start');
  }

  /** Stops the profiler and writes the .cpuprofile to `file`. */
  async stopProfile(file: string): Promise<void> {
    await this.ask('profile-stop', { file }, 60_000);
  }

  /** Writes a heap snapshot of the relay to `file` (pauses the relay while it runs). */
  async heapSnapshot(file: string): Promise<void> {
    await this.ask('heap-snapshot', { file }, 300_000);
  }

  /** SIGTERM (the relay drains), SIGKILL after `timeoutMs`. Resolves with the exit code. */
  async stop(timeoutMs = 20_000): Promise<number | null> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return this.child.exitCode;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    const code = await this.exited;
    clearTimeout(timer);
    return code;
  }
}
