/** What the scenarios need from a system under test: consumers for a set of users, and its processes. */
import type { BenchRelay } from '../env/bench-relay.js';
import type { Receiver } from '../load/tracker.js';

export type SystemName = 'amqplib' | 'relay' | 'web-stomp' | 'relay-coalesced';

export const SYSTEM_LABELS: Record<SystemName, string> = {
  amqplib: 'plain amqplib (ceiling)',
  relay: 'inbox-relay',
  'web-stomp': 'RabbitMQ Web-STOMP',
  'relay-coalesced': 'inbox-relay, acks coalesced as the SDK does',
};

export interface SystemUnderTest {
  readonly name: SystemName;
  /** Starts one consumer per user (a queue `inbox.<user>` each, already declared); resolves once all consume. */
  start(users: readonly string[]): Promise<void>;
  /** Processes whose CPU use the report shows, besides the broker and Redis. */
  pids(): Record<string, number | undefined>;
  stop(): Promise<void>;
  /** Why the system cannot be measured now (e.g. connections it lost), or undefined when it can. */
  health?(): string | undefined;
  /** The relay child, for the system that has one (profiling). */
  readonly relay?: BenchRelay | undefined;
}

/** The receiver of the current phase; clients look it up per message. */
export class ReceiverSlot {
  current: Receiver = { onPayload: () => undefined };
  readonly get = (): Receiver => this.current;
}
