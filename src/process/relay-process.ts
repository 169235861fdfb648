/**
 * The compiled relay run as a child process, so that it can be stopped (SIGTERM: it drains) or
 * killed (SIGKILL: a crash) and started again: the one launcher of the demo, the benchmark and the
 * tests. It guarantees that:
 * - the child gets exactly the environment it is given (plus PATH), nothing else of this process;
 * - `start()` resolves only once the relay is ready, and otherwise rejects with its last output
 *   after the child is gone;
 * - a child still running when this process exits is killed (SIGKILL), whatever the path out.
 */
import { spawn, type ChildProcess, type Serializable } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { fileURLToPath } from 'node:url';
import { waitUntil } from '../wait-until.js';

/**
 * The compiled relay (dist/src/main.js). Run from the sources (the tests import this file through
 * vitest), that is the build next to them: a relay process always runs compiled code.
 */
export const RELAY_MAIN = fileURLToPath(
  new URL(import.meta.url.endsWith('.ts') ? '../../dist/src/main.js' : '../main.js', import.meta.url),
);

/** The line src/server/relay.ts logs once both listeners are bound (with `port` and `adminPort`). */
const LISTENING_MSG = 'inbox-relay listening';
const READY_POLL_MS = 100;
const KEPT_OUTPUT_LINES = 20;
const DEFAULT_READY_TIMEOUT_MS = 30_000;
const DEFAULT_KILL_AFTER_MS = 10_000;

/** How to run one relay process. */
export interface RelayProcessOptions {
  /** The child's whole environment; PATH is added from this process unless set. Undefined values are left out. */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Node options before the script (`--cpu-prof`, `--import <preload>`). */
  readonly nodeArgs?: readonly string[];
  /** The script to run; default {@link RELAY_MAIN}. `dist/src/cli/main.js` with `args: ['serve']` runs the same relay. */
  readonly script?: string;
  readonly args?: readonly string[];
  /**
   * Ready means GET /readyz on this admin port answers 200 (the relay is connected to RabbitMQ
   * and Redis). Without it, ready means the relay logged that it listens, which needs LOG_LEVEL
   * `info` or lower and no `logFile`; {@link RelayProcess.ports} then says where.
   */
  readonly adminPort?: number;
  /** Default 30 s. On timeout the child is killed and `start()` rejects. */
  readonly readyTimeoutMs?: number;
  /** Appends the child's stdout and stderr to this file directly, not through this process. */
  readonly logFile?: string;
  /** Called with every line the child writes (not with `logFile`). */
  readonly onLine?: (line: string) => void;
  /** Opens an IPC channel ({@link RelayProcess.send}, {@link RelayProcess.onMessage}) for a preloaded probe. */
  readonly ipc?: boolean;
  /**
   * Runs the child in a session of its own. On Linux with autogroups the processes of one session
   * share one CPU share: a benchmark's relay must not share the load generator's.
   */
  readonly ownSession?: boolean;
  /** Called with the pid as soon as the child is spawned, before it is ready. */
  readonly onSpawn?: (pid: number) => void;
}

/** How a relay process ended: its exit code or the signal that ended it. */
export interface RelayEnd {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** How a relay process ended, and how long after `stop()` was called. */
export interface RelayExit extends RelayEnd {
  readonly ms: number;
}

/** Children still running; killed when this process exits. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killLiveOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

function readyz(adminPort: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const request = get({ host: '127.0.0.1', port: adminPort, path: '/readyz', agent: false, timeout: 2_000 }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => {
        if (body.length < 500) body += chunk;
      });
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: body.trim() }));
      response.on('error', () => resolve({ status: 0, body: '' }));
    });
    request.on('timeout', () => request.destroy());
    request.on('error', (error) => resolve({ status: 0, body: error.message }));
  });
}

/** The port fields of the relay's "listening" log line, when `line` is that line. */
function listeningPorts(line: string): { port: number; adminPort: number } | undefined {
  if (!line.includes(LISTENING_MSG)) return undefined;
  try {
    const parsed = JSON.parse(line) as { msg?: unknown; port?: unknown; adminPort?: unknown };
    if (parsed.msg !== LISTENING_MSG || typeof parsed.port !== 'number' || typeof parsed.adminPort !== 'number') return undefined;
    return { port: parsed.port, adminPort: parsed.adminPort };
  } catch {
    return undefined;
  }
}

/** One relay process, from `start()` until it is gone. */
export class RelayProcess {
  /** Resolves once the process is gone, however it ended. */
  readonly exited: Promise<RelayEnd>;
  private readonly output: string[] = [];
  private gone = false;
  private listening: { port: number; adminPort: number } | undefined;

  private constructor(
    private readonly child: ChildProcess,
    private readonly options: RelayProcessOptions,
  ) {
    const collector = (): ((chunk: Buffer) => void) => {
      let partial = '';
      return (chunk) => {
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (line.trim() === '') continue;
          this.output.push(line);
          if (this.output.length > KEPT_OUTPUT_LINES) this.output.shift();
          this.listening ??= listeningPorts(line);
          options.onLine?.(line);
        }
      };
    };
    child.stdout?.on('data', collector());
    child.stderr?.on('data', collector());
    live.add(child);
    killLiveOnExit();
    this.exited = new Promise((resolve) => {
      const end = (): void => {
        this.gone = true;
        live.delete(child);
        resolve({ code: child.exitCode, signal: child.signalCode });
      };
      child.once('exit', end);
      child.once('error', (error) => {
        this.output.push(`cannot run the relay: ${error.message}`);
        if (child.pid === undefined) end();
      });
    });
  }

  /**
   * Starts a relay and resolves once it is ready (see {@link RelayProcessOptions.adminPort}).
   * Rejects, with the relay's last output, when it exits first or is not ready in time (then it
   * is killed first).
   */
  static async start(options: RelayProcessOptions): Promise<RelayProcess> {
    if (options.adminPort === undefined && options.logFile !== undefined)
      throw new Error('RelayProcess: without adminPort, readiness is read from the output, which logFile sends elsewhere');
    const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
    for (const [name, value] of Object.entries(options.env)) if (value !== undefined) env[name] = value;
    const log = options.logFile === undefined ? 'pipe' : openSync(options.logFile, 'a');
    let child: ChildProcess;
    try {
      child = spawn(process.execPath, [...(options.nodeArgs ?? []), options.script ?? RELAY_MAIN, ...(options.args ?? [])], {
        env,
        stdio: options.ipc ? ['ignore', log, log, 'ipc'] : ['ignore', log, log],
        detached: options.ownSession ?? false,
      });
    } finally {
      if (typeof log === 'number') closeSync(log);
    }
    const relay = new RelayProcess(child, options);
    if (child.pid !== undefined) options.onSpawn?.(child.pid);
    const timeoutMs = options.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    let last = { status: 0, body: '' };
    const ready = await waitUntil(
      async () => {
        if (!relay.running) return true;
        if (options.adminPort === undefined) return relay.listening !== undefined;
        last = await readyz(options.adminPort);
        return last.status === 200;
      },
      { timeoutMs, intervalMs: READY_POLL_MS },
    );
    if (!relay.running)
      throw new Error(`the relay exited with ${child.exitCode ?? child.signalCode} while starting:\n${relay.lastOutput()}`);
    if (ready) return relay;
    await relay.stop('SIGKILL');
    const lastReadyz = options.adminPort === undefined ? '' : ` (last /readyz: ${last.status} ${last.body})`;
    throw new Error(`the relay was not ready within ${timeoutMs} ms${lastReadyz}:\n${relay.lastOutput()}`);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.gone;
  }

  /** The ports of the relay's "listening" log line: set once it is ready, when its output is read. */
  get ports(): { port: number; adminPort: number } | undefined {
    return this.listening;
  }

  /** The relay's last lines of output (from its log file with `logFile`), for error messages. */
  lastOutput(lines = KEPT_OUTPUT_LINES): string {
    if (this.options.logFile !== undefined) {
      try {
        return readFileSync(this.options.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n') || '(no output)';
      } catch {
        return '(no log file)';
      }
    }
    return this.output.slice(-lines).join('\n') || '(no output)';
  }

  /** Sends a message over the IPC channel (`ipc: true`). */
  send(message: Serializable): void {
    if (!this.child.send) throw new Error('RelayProcess: started without ipc');
    this.child.send(message);
  }

  /** Listens to messages over the IPC channel; returns the function that stops listening. */
  onMessage(listener: (message: unknown) => void): () => void {
    this.child.on('message', listener);
    return () => this.child.off('message', listener);
  }

  /**
   * Sends `signal` and resolves once the process is gone; escalates to SIGKILL after
   * `killAfterMs`. Resolves at once when it is already gone.
   */
  async stop(signal: NodeJS.Signals = 'SIGTERM', killAfterMs = DEFAULT_KILL_AFTER_MS): Promise<RelayExit> {
    const started = Date.now();
    if (this.running) {
      this.child.kill(signal);
      const escalate = setTimeout(() => this.child.kill('SIGKILL'), killAfterMs);
      await this.exited;
      clearTimeout(escalate);
    }
    return { code: this.child.exitCode, signal: this.child.signalCode, ms: Date.now() - started };
  }
}
