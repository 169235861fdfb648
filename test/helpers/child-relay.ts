/** Runs the compiled relay (`node dist/src/main.js`) as a child process, for crash and signal tests. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync } from 'node:fs';

/** Set CHILD_RELAY_LOG_DIR to keep every child relay's log there (one file per process). */
const logDir = process.env.CHILD_RELAY_LOG_DIR;

export { freePort } from '../../src/demo/relay-process.js';

export class ChildRelay {
  private child: ChildProcess | undefined;
  readonly logs: string[] = [];

  constructor(private readonly env: Record<string, string | undefined>) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Starts the relay and resolves once it logged that it listens. */
  async start(timeoutMs = 30_000): Promise<void> {
    const child = spawn(process.execPath, ['dist/src/main.js'], {
      env: { PATH: process.env.PATH, ...this.env, LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    let buffered = '';
    const listening = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay did not start within ${timeoutMs} ms:\n${this.logs.join('\n')}`)), timeoutMs);
      child.stdout!.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const lines = buffered.split('\n');
        buffered = lines.pop() ?? '';
        for (const line of lines) {
          this.logs.push(line);
          if (logDir) appendFileSync(`${logDir}/relay-${child.pid}.log`, `${line}\n`);
          if (line.includes('inbox-relay listening')) {
            clearTimeout(timer);
            resolve();
          }
        }
      });
      child.stderr!.on('data', (chunk: Buffer) => this.logs.push(chunk.toString()));
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`relay exited with ${code}:\n${this.logs.join('\n')}`));
      });
    });
    await listening;
  }

  /** Sends a signal and resolves with the exit code (or signal) once the process is gone. */
  async stop(signal: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return { code: child?.exitCode ?? null, signal: child?.signalCode ?? null, ms: 0 };
    const started = Date.now();
    const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill(signal);
    const [code, sig] = await exited;
    return { code, signal: sig, ms: Date.now() - started };
  }
}
