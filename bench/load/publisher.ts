/** The bench's handle on its publisher thread (see publisher-worker.ts). */
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { PAYLOAD_BYTES } from './payload.js';
import type { PublisherEvent, RunCommand, RunReport } from './publisher-protocol.js';
import { withTimeout } from '../lib/time.js';

export type RunOptions = Omit<RunCommand, 'cmd' | 'confirmWindow' | 'payloadBytes'> & { confirmWindow?: number; payloadBytes?: number };

export const CONFIRM_WINDOW = 2_000;

export class Publisher {
  private waiting: { resolve: (report: RunReport) => void; reject: (error: Error) => void } | undefined;
  private lastError: string | undefined;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (event: PublisherEvent) => {
      if (event.ev === 'done') {
        const waiting = this.waiting;
        this.waiting = undefined;
        waiting?.resolve(event);
      } else if (event.ev === 'error') {
        this.lastError = event.message;
        const waiting = this.waiting;
        this.waiting = undefined;
        waiting?.reject(new Error(event.message));
      }
    });
    worker.on('exit', () => {
      this.waiting?.reject(new Error(`publisher thread exited${this.lastError ? `: ${this.lastError}` : ''}`));
      this.waiting = undefined;
    });
  }

  /** `received` is the receivers' shared counter (see Tracker), read by 'max' runs to bound messages in flight. */
  static async start(url: string, runId: string, received: Int32Array): Promise<Publisher> {
    const worker = new Worker(fileURLToPath(new URL('./publisher-worker.js', import.meta.url)), { workerData: { url, runId, received } });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        worker.once('message', (event: PublisherEvent) =>
          event.ev === 'ready' ? resolve() : reject(new Error(event.ev === 'error' ? event.message : 'unexpected')),
        );
        worker.once('error', reject);
      }),
      15_000,
      'publisher thread start',
    );
    return new Publisher(worker);
  }

  /** Runs one publishing phase; resolves once every message was confirmed or refused (or the bound passed). */
  run(options: RunOptions): Promise<RunReport> {
    if (this.waiting) return Promise.reject(new Error('publisher is busy'));
    const command: RunCommand = { cmd: 'run', confirmWindow: CONFIRM_WINDOW, payloadBytes: PAYLOAD_BYTES, ...options };
    const done = new Promise<RunReport>((resolve, reject) => {
      this.waiting = { resolve, reject };
    });
    this.worker.postMessage(command);
    return withTimeout(done, options.durationMs + 60_000, 'publisher run');
  }

  /** Ends the current run early. */
  stop(): void {
    this.worker.postMessage({ cmd: 'stop' });
  }

  async close(): Promise<void> {
    this.worker.postMessage({ cmd: 'close' });
    const exited = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    await withTimeout(exited, 5_000, 'publisher close').catch(() => this.worker.terminate());
  }
}
