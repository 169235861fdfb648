/**
 * Throughput and latency suites. For each queue type and user count, every system gets its own
 * fresh queues (same name scheme and arguments) and its consumers are all started first; then
 * the measuring phases alternate between systems, in rounds with a rotating order, so that a
 * burst of other load on the shared machine does not fall on one system only. Reported
 * throughput is the median of the rounds.
 */
import type { QueueType } from '../../src/config.js';
import { declareInboxes, deleteInboxes } from '../load/queues.js';
import { sleep, withTimeout } from '../lib/time.js';
import type { Plan } from '../options.js';
import { AmqpSystem } from '../systems/amqp-system.js';
import { RelaySystem } from '../systems/relay-system.js';
import { StompSystem } from '../systems/stomp-system.js';
import type { SystemName, SystemUnderTest } from '../systems/system.js';
import type { BenchContext } from './context.js';
import { latencyPhase, throughputPhase, type LatencyResult, type ThroughputResult } from './phases.js';

export interface SuiteResults {
  throughput: ThroughputResult[];
  latency: LatencyResult[];
  errors: string[];
}

/** Short system tags in queue names and Redis prefixes. */
export const SHORT: Record<SystemName, string> = { amqplib: 'a', relay: 'r', 'web-stomp': 's', 'relay-coalesced': 'rc' };

/** The SDK's defaults for window 20 (src/client/ack-coalescer.ts): an ack every min(100, window / 2) messages or 50 ms. */
const SDK_ACKS = { kind: 'coalesced', batch: 10, delayMs: 50 } as const;

/** A fresh, not yet started system of that name, with its own Redis prefix and log file (relays) under `tag`. */
export function makeSystem(
  ctx: BenchContext,
  name: SystemName,
  queueType: QueueType,
  tag: string,
  nodeArgs: string[] | undefined,
): SystemUnderTest {
  if (name === 'amqplib') return new AmqpSystem(ctx.rabbitmqUrl, ctx.window, ctx.slot);
  if (name === 'web-stomp') return new StompSystem(ctx.window, ctx.slot);
  return new RelaySystem(
    {
      rabbitmqUrl: ctx.rabbitmqUrl,
      redisUrl: ctx.redisUrl,
      redisKeyPrefix: `bench-${ctx.runId}-${tag}:`,
      jwtSecret: ctx.jwtSecret,
      queueType,
      window: ctx.window,
      logFile: `${ctx.resultsDir}/relay-${ctx.runId}-${tag}.log.tmp`,
      ...(nodeArgs ? { nodeArgs } : {}),
      onStarted: (pid) => ctx.priorities.apply(pid),
      ...(name === 'relay-coalesced'
        ? { name, ackPolicy: { ...SDK_ACKS, batch: Math.max(1, Math.min(100, Math.floor(ctx.window / 2))) } }
        : {}),
    },
    ctx.slot,
  );
}

interface Suite {
  queueType: QueueType;
  users: number;
  throughput: boolean;
  latency: boolean;
}

function suitesOf(plan: Plan): Suite[] {
  const suites: Suite[] = [];
  for (const queueType of plan.throughput.queueTypes) {
    for (const users of plan.throughput.users) {
      const latency = plan.latency !== undefined && plan.latency.queueType === queueType && plan.latency.users === users;
      suites.push({ queueType, users, throughput: true, latency });
    }
  }
  const lat = plan.latency;
  if (lat && !suites.some((s) => s.latency)) suites.push({ queueType: lat.queueType, users: lat.users, throughput: false, latency: true });
  return suites;
}

/** One system under test in a suite: its users (one queue each) and whether it is still running fine. */
export interface Entry {
  name: SystemName;
  users: string[];
  system: SystemUnderTest;
  label: string;
  ok: boolean;
}

/** Stops each system and deletes its users' queues; what cannot be deleted is left to `--cleanup`. */
export async function stopAndClean(ctx: BenchContext, entries: readonly Pick<Entry, 'system' | 'users' | 'label'>[]): Promise<void> {
  for (const entry of entries) {
    await withTimeout(entry.system.stop(), 90_000, `stop ${entry.label}`).catch((error: unknown) => ctx.log(`${(error as Error).message}`));
    const deleted = await withTimeout(deleteInboxes(ctx.rabbitmqUrl, entry.users, Date.now() + 240_000), 300_000, 'delete queues').catch(
      (error: unknown) => ({ done: 0, failed: entry.users.length, errors: [(error as Error).message] }),
    );
    if (deleted.failed > 0) {
      ctx.log(`could not delete ${deleted.failed} queues of ${entry.label} (node dist/bench/run.js --cleanup): ${deleted.errors[0] ?? ''}`);
    }
  }
}

/** The items starting at index `by` (wrapping), so that each round starts with another system. */
export function rotate<T>(items: readonly T[], by: number): T[] {
  const n = items.length;
  return n === 0 ? [] : items.map((_, i) => items[(i + by) % n] as T);
}

export async function runSuites(
  ctx: BenchContext,
  plan: Plan,
  systems: SystemName[],
  nodeArgs: string[] | undefined,
): Promise<SuiteResults> {
  const results: SuiteResults = { throughput: [], latency: [], errors: [] };
  const fail = (entry: Entry, error: unknown): void => {
    const message = `${entry.label}: ${error instanceof Error ? error.message : String(error)}`;
    ctx.log(`FAILED ${message}`);
    results.errors.push(message);
    entry.ok = false;
  };
  for (const suite of suitesOf(plan)) {
    const entries: Entry[] = systems.map((name) => {
      const tag = `${SHORT[name]}-${suite.queueType[0]}${suite.users}`;
      return {
        name,
        users: Array.from({ length: suite.users }, (_, i) => `bench-${ctx.runId}-${tag}-u${i}`),
        system: makeSystem(ctx, name, suite.queueType, tag, nodeArgs),
        label: `${name} ${suite.queueType} ${suite.users} users`,
        ok: true,
      };
    });
    try {
      for (const entry of entries) {
        try {
          ctx.log(`setup: ${entry.label}`);
          const declared = await declareInboxes(ctx.rabbitmqUrl, entry.users, suite.queueType, Date.now() + 300_000);
          if (declared.failed > 0) throw new Error(`could not declare ${declared.failed} queues: ${declared.errors.join('; ')}`);
          await entry.system.start(entry.users);
        } catch (error) {
          fail(entry, error);
        }
      }
      await sleep(1_000);
      const rounds = suite.throughput ? plan.throughput.rounds : 0;
      for (let round = 1; round <= rounds; round += 1) {
        for (const entry of rotate(entries, round - 1)) {
          if (!entry.ok) continue;
          try {
            ctx.log(`throughput: ${entry.label}, round ${round}/${rounds}`);
            const r = await throughputPhase(ctx, entry.system, entry.users, suite.queueType, round, {
              warmupMs: plan.throughput.warmupMs,
              measureMs: plan.throughput.measureMs,
              drainTimeoutMs: 60_000,
            });
            results.throughput.push(r);
            ctx.log(
              `  ${r.msgsPerSec} msgs/s (published ${r.publishPerSec}/s), lost ${r.lost}, duplicates ${r.duplicates}, out of order ${r.outOfOrder}, cpu ${JSON.stringify(r.cpu)}, publisher waited on ${JSON.stringify(r.publisherLimitedBy)}`,
            );
          } catch (error) {
            fail(entry, error);
          }
          await sleep(1_000);
        }
      }
      if (suite.latency && plan.latency) {
        for (const rate of plan.latency.rates) {
          for (const entry of entries) {
            // The coalesced-ack variant is a throughput extra; latency compares the three systems.
            if (!entry.ok || entry.name === 'relay-coalesced') continue;
            try {
              ctx.log(`latency: ${entry.label} at ${rate} msgs/s`);
              const r = await latencyPhase(ctx, entry.system, entry.users, suite.queueType, rate, {
                warmupMs: plan.latency.warmupMs,
                measureMs: plan.latency.measureMs,
                drainTimeoutMs: 60_000,
              });
              results.latency.push(r);
              const l = r.latency;
              ctx.log(
                `  p50 ${l?.p50Ms} ms, p99 ${l?.p99Ms} ms, p99.9 ${l?.p999Ms} ms, max ${l?.maxMs} ms (n=${l?.count}), lost ${r.lost}, duplicates ${r.duplicates}, cpu ${JSON.stringify(r.cpu)}`,
              );
            } catch (error) {
              fail(entry, error);
            }
            await sleep(1_000);
          }
        }
      }
    } finally {
      await stopAndClean(ctx, entries);
    }
  }
  return results;
}
