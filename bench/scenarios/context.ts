/** What every scenario shares: the publisher thread, the receiver slot, phase ids and the log. */
import type { Priorities } from '../env/priority.js';
import type { Publisher } from '../load/publisher.js';
import type { ProfileSummary } from '../report/cpu-profile.js';
import type { ReceiverSlot } from '../systems/system.js';

export interface BenchContext {
  runId: string;
  rabbitmqUrl: string;
  redisUrl: string;
  jwtSecret: string;
  window: number;
  publisher: Publisher;
  slot: ReceiverSlot;
  /** Pids of the broker and Redis, for CPU shares. */
  brokerPid: number | undefined;
  redisPid: number | undefined;
  resultsDir: string;
  /** Set with --profile: the relay is profiled over each measuring window, profiles written here. */
  profileDir: string | undefined;
  /** Summaries of the profiles taken so far. */
  profiles: ProfileSummary[];
  /** Set with --heap-snapshot: a heap snapshot of the relay after the connections are up. */
  heapSnapshot: boolean;
  /** Raises the CPU priority of processes the bench starts (relay children) when the run does so. */
  priorities: Priorities;
  nextPhase(): number;
  log(line: string): void;
}

export function sum(values: readonly number[]): number {
  let total = 0;
  for (const value of values) total += value;
  return total;
}
