/**
 * The ack-timeout rule: a client that holds unacked messages and made no ack progress for
 * `ackTimeoutMs` (kept well below RabbitMQ's consumer timeout) is closed with a resumable code,
 * so its messages go back to RabbitMQ in order. Pure decisions; the gateway's sweep applies them.
 */

/** How often the relay checks ack progress: a quarter of the timeout, between 250 ms and 5 s. */
export function ackSweepIntervalMs(ackTimeoutMs: number): number {
  return Math.max(250, Math.min(ackTimeoutMs / 4, 5_000));
}

export interface AckProgressInput {
  /** Messages sent on the connection and not acked yet. */
  unacked: number;
  /** When the connection last made ack progress (or last held nothing unacked). */
  lastProgressAt: number;
  now: number;
  ackTimeoutMs: number;
}

/**
 * `idle`: nothing unacked (the clock restarts now); `waiting`: unacked, within the timeout;
 * `timed-out`: unacked and no progress for `ackTimeoutMs` or longer.
 */
export type AckProgressDecision = 'idle' | 'waiting' | 'timed-out';

export function decideAckProgress(input: AckProgressInput): AckProgressDecision {
  if (input.unacked === 0) return 'idle';
  return input.now - input.lastProgressAt < input.ackTimeoutMs ? 'waiting' : 'timed-out';
}
