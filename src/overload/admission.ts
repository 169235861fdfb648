/**
 * Admission control for new connections: a node-wide connection limit, a connection rate
 * (token bucket), a limit on connections still waiting for `hello`, and shedding while the event
 * loop lags. A refusal says why and carries a retry-after spread with jitter, so refused clients
 * do not all come back in the same millisecond. Pure: counts, clock and randomness are inputs.
 */
import { TokenBucket } from './token-bucket.js';

export interface AdmissionLimits {
  maxConnections: number;
  connectionRatePerSec: number;
  connectionBurst: number;
  maxPendingHellos: number;
  eventLoopLagShedMs: number;
}

export interface AdmissionLoad {
  connections: number;
  pendingHellos: number;
  eventLoopLagMs: number;
}

export type AdmissionReason = 'max-connections' | 'connection-rate' | 'pending-hellos' | 'event-loop-lag' | 'dependency-unavailable';

export type Admission = { ok: true } | { ok: false; reason: AdmissionReason; retryAfterMs: number };

/** Retry-after base per reason (ms): longer where the condition lasts longer. */
const RETRY_BASE_MS: Record<AdmissionReason, number> = {
  'connection-rate': 1_000,
  'pending-hellos': 2_000,
  'event-loop-lag': 2_000,
  'max-connections': 10_000,
  'dependency-unavailable': 3_000,
};

/** A retry-after between the base and twice the base (full spread over one base). */
export function jitteredRetryAfter(reason: AdmissionReason, random: () => number = Math.random, extraMs = 0): number {
  const base = RETRY_BASE_MS[reason] + extraMs;
  return Math.round(base + random() * base);
}

export class AdmissionControl {
  private readonly bucket: TokenBucket;

  constructor(
    private readonly limits: AdmissionLimits,
    now: number,
    private readonly random: () => number = Math.random,
  ) {
    this.bucket = new TokenBucket(limits.connectionRatePerSec, limits.connectionBurst, now);
  }

  admit(load: AdmissionLoad, now: number): Admission {
    const refuse = (reason: AdmissionReason, extraMs = 0): Admission => ({
      ok: false,
      reason,
      retryAfterMs: jitteredRetryAfter(reason, this.random, extraMs),
    });
    if (load.connections >= this.limits.maxConnections) return refuse('max-connections');
    if (load.eventLoopLagMs >= this.limits.eventLoopLagShedMs) return refuse('event-loop-lag');
    if (load.pendingHellos >= this.limits.maxPendingHellos) return refuse('pending-hellos');
    if (!this.bucket.take(now)) return refuse('connection-rate', this.bucket.msUntilToken());
    return { ok: true };
  }
}
