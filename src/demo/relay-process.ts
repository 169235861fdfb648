/**
 * The relay under demonstration, run as its own process (`node dist/src/main.js`) so that it can
 * be stopped (SIGTERM: drain) or killed (SIGKILL: crash) and started again on the same port.
 * A process this module started is killed when the demo's process exits, whatever the path out.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { get } from 'node:http';
import net from 'node:net';
import { fileURLToPath } from 'node:url';

const RELAY_MAIN = fileURLToPath(new URL('../main.js', import.meta.url));
const READY_POLL_MS = 100;
const KEPT_OUTPUT_LINES = 20;

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function readyz(adminPort: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = get({ host: '127.0.0.1', port: adminPort, path: '/readyz', agent: false, timeout: 1_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}

/** How a relay process ended. */
export interface RelayExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly ms: number;
}

/** The `msg` of a pino JSON line, or the line itself. */
function logMessage(line: string): string {
  try {
    const parsed = JSON.parse(line) as { msg?: unknown };
    return typeof parsed.msg === 'string' ? parsed.msg : line;
  } catch {
    return line;
  }
}

/** One relay process. */
export class RelayProcess {
  private readonly output: string[] = [];
  private readonly exited: Promise<void>;
  private gone = false;
  private readonly killOnExit = (): void => void this.child.kill('SIGKILL');

  private constructor(
    private readonly child: ChildProcess,
    onLog: (message: string) => void,
  ) {
    const collector = (): ((chunk: Buffer) => void) => {
      let partial = '';
      return (chunk) => {
        const lines = (partial + chunk.toString()).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines.filter((text) => text.trim() !== '')) {
          this.output.push(line);
          if (this.output.length > KEPT_OUTPUT_LINES) this.output.shift();
          onLog(logMessage(line));
        }
      };
    };
    child.stdout?.on('data', collector());
    child.stderr?.on('data', collector());
    process.once('exit', this.killOnExit);
    this.exited = new Promise((resolve) => {
      const end = (): void => {
        this.gone = true;
        process.off('exit', this.killOnExit);
        resolve();
      };
      child.once('exit', end);
      child.once('error', (error) => {
        this.output.push(`cannot run the relay: ${error.message}`);
        end();
      });
    });
  }

  /**
   * Starts a relay with exactly `env` (plus PATH) and resolves once its /readyz answers 200.
   * Rejects, with the relay's last output, when it exits or is not ready within `timeoutMs`.
   */
  static async start(env: Record<string, string>, adminPort: number, onLog: (message: string) => void, timeoutMs = 20_000): Promise<RelayProcess> {
    const child = spawn(process.execPath, [RELAY_MAIN], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const relay = new RelayProcess(child, onLog);
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!relay.running) throw new Error(`the relay exited with ${child.exitCode ?? child.signalCode} while starting:\n${relay.lastOutput()}`);
      if (await readyz(adminPort)) return relay;
      await new Promise((resolve) => setTimeout(resolve, READY_POLL_MS));
    }
    await relay.stop('SIGKILL');
    throw new Error(`the relay was not ready within ${timeoutMs} ms:\n${relay.lastOutput()}`);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return !this.gone;
  }

  /** The relay's last lines of output, for error messages. */
  lastOutput(): string {
    return this.output.join('\n') || '(no output)';
  }

  /**
   * Sends `signal` and resolves once the process is gone; escalates to SIGKILL after
   * `killAfterMs`. Resolves at once if it already exited.
   */
  async stop(signal: NodeJS.Signals, killAfterMs = 10_000): Promise<RelayExit> {
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
