/**
 * The benchmark message: a JSON object of PAYLOAD_BYTES bytes naming its phase, user and
 * per-user number, and the monotonic time (µs) it was due to be published. Receivers use it to
 * count losses, duplicates and order, and to measure latency.
 */
export const PAYLOAD_BYTES = 230;

export interface Payload {
  /** Phase id: receipts of other phases are ignored. */
  r: number;
  /** User index. */
  u: number;
  /** Per-user message number, from 1. */
  k: number;
  /** When the message was due to be published (monotonic µs). */
  t: number;
}

export function encodePayload(phase: number, user: number, k: number, tUs: number, bytes = PAYLOAD_BYTES): Buffer {
  const head = `{"r":${phase},"u":${user},"k":${k},"t":${tUs},"pad":"`;
  const padding = Math.max(0, bytes - head.length - 2);
  return Buffer.from(`${head}${'x'.repeat(padding)}"}`);
}

export function isPayload(value: unknown): value is Payload {
  const p = value as Partial<Payload> | null;
  return (
    typeof p === 'object' &&
    p !== null &&
    typeof p.r === 'number' &&
    typeof p.u === 'number' &&
    typeof p.k === 'number' &&
    typeof p.t === 'number'
  );
}
