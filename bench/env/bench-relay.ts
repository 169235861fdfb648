/**
 * The relay under test: the compiled relay as a child process (src/process/relay-process.ts),
 * configured only through its environment (src/config.ts), with the bench's probe preloaded
 * (relay-probe.ts) for memory readings, CPU profiles and heap snapshots over IPC.
 */
import { fileURLToPath } from 'node:url';
import type { QueueType } from '../../src/config.js';
import { freePort } from '../../src/process/free-port.js';
import { RelayProcess } from '../../src/process/relay-process.js';
import { rssBytes } from './proc.js';
import { withTimeout } from '../lib/time.js';

const READY_TIMEOUT_MS = 60_000;
const STOP_KILL_AFTER_MS = 20_000;

export interface RelayMemory {
  /** VmRSS from /proc. */
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  gcRan: boolean;
}

export interface BenchRelayOptions {
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

export class BenchRelay {
  private probeId = 0;

  private constructor(
    private readonly child: RelayProcess,
    readonly port: number,
    readonly adminPort: number,
    readonly logFile: string,
  ) {}

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  static async start(options: BenchRelayOptions): Promise<BenchRelay> {
    const [port, adminPort] = [await freePort(), await freePort()];
    const probe = fileURLToPath(new URL('../relay-probe.js', import.meta.url));
    const relay = await RelayProcess.start({
      nodeArgs: [...(options.nodeArgs ?? []), '--expose-gc', '--import', probe],
      env: {
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
      adminPort,
      readyTimeoutMs: READY_TIMEOUT_MS,
      logFile: options.logFile,
      ipc: true,
      ownSession: true,
      ...(options.onSpawn ? { onSpawn: options.onSpawn } : {}),
    });
    return new BenchRelay(relay, port, adminPort, options.logFile);
  }

  logTail(lines = 20): string {
    return this.child.lastOutput(lines);
  }

  private ask<T>(probe: string, extra: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<T> {
    const id = ++this.probeId;
    let stopListening = (): void => undefined;
    const answer = new Promise<T>((resolve, reject) => {
      stopListening = this.child.onMessage((raw) => {
        const message = raw as { probe?: string; id?: number; error?: string };
        if (message.probe !== probe || message.id !== id) return;
        stopListening();
        if (message.error) reject(new Error(`relay probe ${probe}: ${message.error}`));
        else resolve(message as T);
      });
    });
    this.child.send({ probe, id, ...extra });
    return withTimeout(answer, timeoutMs, `relay probe ${probe}`).finally(stopListening);
  }

  /** The relay's memory: VmRSS and, through the probe, the V8 heap (after a full GC when `gc`). */
  async memory(gc = true): Promise<RelayMemory> {
    const heap = await this.ask<Omit<RelayMemory, 'rss'>>('memory', { gc });
    return {
      heapUsed: heap.heapUsed,
      heapTotal: heap.heapTotal,
      external: heap.external,
      arrayBuffers: heap.arrayBuffers,
      gcRan: heap.gcRan,
      rss: rssBytes(this.pid) ?? 0,
    };
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

  /** Whether the child is still running. */
  get running(): boolean {
    return this.child.running;
  }

  /** SIGKILL: a crash, as the cluster's failover sees it. Resolves once the process is gone. */
  async kill(): Promise<void> {
    await this.child.stop('SIGKILL');
  }

  /**
   * The relay's counters whose names start with `prefix`, from its /metrics, keyed by series
   * (`name{labels}`); empty when the admin port does not answer.
   */
  async counters(prefix: string): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    try {
      const response = await fetch(`http://127.0.0.1:${this.adminPort}/metrics`, { signal: AbortSignal.timeout(5_000) });
      for (const line of (await response.text()).split('\n')) {
        if (!line.startsWith(prefix)) continue;
        const at = line.lastIndexOf(' ');
        const value = Number(line.slice(at + 1));
        if (Number.isFinite(value)) out[line.slice(0, at)] = value;
      }
    } catch {
      // Diagnostics only: a relay that does not answer has no counters to show.
    }
    return out;
  }

  /** SIGTERM (the relay drains), SIGKILL after 20 s. Resolves with the exit code. */
  async stop(): Promise<number | null> {
    return (await this.child.stop('SIGTERM', STOP_KILL_AFTER_MS)).code;
  }
}
