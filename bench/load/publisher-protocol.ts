/** Messages between the bench and its publisher thread. */
export interface RunCommand {
  cmd: 'run';
  phase: number;
  /** Routing keys (user ids), indexed by user number. */
  users: string[];
  /** 'max': as fast as `confirmWindow` unconfirmed messages allow; 'rate': open loop at `rate` msgs/s. */
  mode: 'max' | 'rate';
  rate?: number;
  /** The run ends after this long, after `totalMessages`, or on a `stop`, whichever comes first. */
  durationMs: number;
  totalMessages?: number;
  confirmWindow: number;
  /**
   * 'max' mode: at most this many messages published and not yet received by a consumer (the
   * receivers count into a shared counter), so that the load is end to end and queues do not
   * pile up behind a publisher that is faster than the consumers.
   */
  maxInFlight?: number;
  payloadBytes: number;
}

export type PublisherCommand = RunCommand | { cmd: 'stop' } | { cmd: 'close' };

export interface RunReport {
  ev: 'done';
  phase: number;
  /** Messages published per user (numbers 1..n). */
  published: number[];
  /** [user, k] of messages the broker refused (nack). */
  nacked: [number, number][];
  confirmed: number;
  /** Messages whose confirm never came within the bound. */
  unconfirmed: number;
  startedUs: number;
  publishMs: number;
  /** Largest number of unconfirmed messages seen. */
  maxOutstanding: number;
  /** How far the open-loop schedule fell behind at worst (ms). */
  maxLagMs: number;
  /** 'max' mode: how often the publisher had to wait, by reason (a diagnostic of who sets the pace). */
  limitedBy: { confirms: number; inFlight: number; socket: number };
}

export type PublisherEvent = RunReport | { ev: 'ready' } | { ev: 'error'; message: string };
