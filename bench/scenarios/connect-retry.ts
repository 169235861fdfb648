/** Connecting a relay client the way a real one does after an outage: retry refusals, honouring the relay's retry-after. */
import { ConnectRefused, type RelayClient } from '../clients/relay-client.js';
import { sleep } from '../lib/time.js';

/** Handshakes in flight at once when a scenario connects many relay clients (connections, fan-out). */
export const CONNECT_CONCURRENCY = 200;

/** Connection attempts of one scenario, shared by all its clients. */
export interface ConnectCounters {
  attempts: number;
  refusals: number;
  /** Failed attempts by reason ("closed 1013 pending-hellos", "HTTP 503", "ECONNRESET", "no welcome in time"...). */
  failures: Record<string, number>;
}

/** A short, countable reason for a failed connect attempt (no per-attempt numbers in it). */
function failureReason(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  return error.message
    .replace(/retry-after=\d+/g, '')
    .replace(/\s+/g, ' ')
    .trim()
    .slice(0, 80);
}

/** Connects (or reconnects with resume), retrying refusals with the relay's retry-after plus jitter, until `deadline`. */
export async function connectWithRetry(client: RelayClient, deadline: number, counters: ConnectCounters): Promise<void> {
  let delay = 100;
  for (;;) {
    counters.attempts += 1;
    try {
      await client.connect(Math.max(1_000, Math.min(30_000, deadline - Date.now())));
      return;
    } catch (error) {
      if (error instanceof ConnectRefused) counters.refusals += 1;
      const reason = failureReason(error);
      counters.failures[reason] = (counters.failures[reason] ?? 0) + 1;
      if (Date.now() >= deadline) throw error;
      const wait = error instanceof ConnectRefused && error.retryAfterMs !== undefined ? error.retryAfterMs : delay;
      delay = Math.min(2_000, delay * 2);
      await sleep(Math.min(wait * (0.5 + Math.random()), Math.max(0, deadline - Date.now())));
    }
  }
}
