/**
 * The two measuring phases run on a started system: throughput (publisher at full speed within
 * the confirm window; consumed msgs/s over a window after a warm-up) and latency (open loop at a
 * fixed rate; due-time to receipt, recorded after a warm-up). Each ends by waiting until every
 * confirmed message arrived, then accounts for losses, duplicates and order.
 */
import { watchCpu } from '../env/proc.js';
import { CONFIRM_WINDOW } from '../load/publisher.js';
import { Tracker, type Accounting, type LatencySummary } from '../load/tracker.js';
import { waitUntil } from '../../src/wait-until.js';
import { nowUs, sleep } from '../lib/time.js';
import type { SystemName, SystemUnderTest } from '../systems/system.js';
import { profileWindow } from './profiling.js';
import { sum, type BenchContext } from './context.js';

export interface ThroughputResult extends Accounting {
  system: SystemName;
  queueType: string;
  users: number;
  round: number;
  /** Messages received by consumers per second over the measuring window. */
  msgsPerSec: number;
  /** Messages published per second over the whole publishing time. */
  publishPerSec: number;
  unconfirmed: number;
  /** How often the publisher waited, by reason: confirms (broker), in-flight bound (consumers), socket. */
  publisherLimitedBy: { confirms: number; inFlight: number; socket: number };
  drainMs: number;
  drained: boolean;
  /** % of one core per process over the measuring window; `machine` is % of all cores (see watchCpu). */
  cpu: Record<string, number>;
  /** CPU time per message consumed (µs), per process and in total (broker + Redis + bench + relay). */
  cpuUsPerMsg: Record<string, number>;
}

export interface LatencyResult extends Accounting {
  system: SystemName;
  queueType: string;
  users: number;
  rate: number;
  achievedRate: number;
  latency: LatencySummary | undefined;
  /** The publisher's worst lag behind its schedule (ms): large values mean the generator, not the system, was late. */
  publisherLagMs: number;
  drained: boolean;
  cpu: Record<string, number>;
}

export interface PhaseTiming {
  warmupMs: number;
  measureMs: number;
  drainTimeoutMs: number;
}

/** The processes whose CPU a phase records: broker, Redis, the bench and the system's own (relay). */
export function cpuPids(ctx: BenchContext, system: SystemUnderTest): Record<string, number | undefined> {
  return { broker: ctx.brokerPid, redis: ctx.redisPid, bench: process.pid, ...system.pids() };
}

/** CPU µs per message of each of our processes (cpu is % of one core, so % x 10,000 / rate). */
export function cpuPerMessage(cpu: Record<string, number>, msgsPerSec: number): Record<string, number> {
  const out: Record<string, number> = {};
  if (msgsPerSec <= 0) return out;
  let total = 0;
  for (const name of ['broker', 'redis', 'bench', 'relay']) {
    const value = cpu[name];
    if (value === undefined) continue;
    out[name] = Math.round((value * 10_000) / msgsPerSec);
    total += out[name];
  }
  out.total = total;
  return out;
}

async function drain(tracker: Tracker, expected: number, timeoutMs: number): Promise<{ drained: boolean; drainMs: number }> {
  const started = Date.now();
  const drained = await waitUntil(() => tracker.received >= expected, { timeoutMs, intervalMs: 20 });
  // Late duplicates show up shortly after the last message.
  await sleep(300);
  return { drained, drainMs: Date.now() - started };
}

export async function throughputPhase(
  ctx: BenchContext,
  system: SystemUnderTest,
  users: readonly string[],
  queueType: string,
  round: number,
  timing: PhaseTiming,
): Promise<ThroughputResult> {
  const unhealthy = system.health?.();
  if (unhealthy) throw new Error(unhealthy);
  const phase = ctx.nextPhase();
  const tracker = new Tracker(phase, users.length);
  ctx.slot.current = tracker;
  const maxInFlight = users.length * ctx.window + CONFIRM_WINDOW;
  const running = ctx.publisher.run({ phase, users: [...users], mode: 'max', maxInFlight, durationMs: timing.warmupMs + timing.measureMs });
  await sleep(timing.warmupMs);
  const profile = await profileWindow(ctx, system.relay, `${system.name}-throughput-${queueType}-${users.length}-round${round}`);
  const countStart = tracker.received;
  const usStart = nowUs();
  const cpu = watchCpu(cpuPids(ctx, system));
  await sleep(timing.measureMs);
  const countEnd = tracker.received;
  const usEnd = nowUs();
  const cpuUse = cpu.stop();
  await profile.stop();
  const report = await running;
  const expected = sum(report.published) - report.nacked.length - report.unconfirmed;
  const { drained, drainMs } = await drain(tracker, expected, timing.drainTimeoutMs);
  const accounting = tracker.account(report.published, report.nacked);
  const msgsPerSec = Math.round((countEnd - countStart) / ((usEnd - usStart) / 1e6));
  return {
    system: system.name,
    queueType,
    users: users.length,
    round,
    msgsPerSec,
    cpuUsPerMsg: cpuPerMessage(cpuUse, msgsPerSec),
    publishPerSec: Math.round(sum(report.published) / (report.publishMs / 1000)),
    unconfirmed: report.unconfirmed,
    publisherLimitedBy: report.limitedBy,
    drainMs,
    drained,
    cpu: cpuUse,
    ...accounting,
  };
}

export async function latencyPhase(
  ctx: BenchContext,
  system: SystemUnderTest,
  users: readonly string[],
  queueType: string,
  rate: number,
  timing: PhaseTiming,
): Promise<LatencyResult> {
  const unhealthy = system.health?.();
  if (unhealthy) throw new Error(unhealthy);
  const phase = ctx.nextPhase();
  const tracker = new Tracker(phase, users.length, { latency: true });
  ctx.slot.current = tracker;
  const from = nowUs() + timing.warmupMs * 1000;
  tracker.recordLatencyBetween(from, from + timing.measureMs * 1000);
  const running = ctx.publisher.run({ phase, users: [...users], mode: 'rate', rate, durationMs: timing.warmupMs + timing.measureMs });
  await sleep(timing.warmupMs);
  const profile = await profileWindow(ctx, system.relay, `${system.name}-latency-${queueType}-${users.length}-${rate}`);
  const cpu = watchCpu(cpuPids(ctx, system));
  await sleep(timing.measureMs);
  const cpuUse = cpu.stop();
  await profile.stop();
  const report = await running;
  const expected = sum(report.published) - report.nacked.length - report.unconfirmed;
  const { drained } = await drain(tracker, expected, timing.drainTimeoutMs);
  return {
    system: system.name,
    queueType,
    users: users.length,
    rate,
    achievedRate: Math.round(sum(report.published) / (report.publishMs / 1000)),
    latency: tracker.latency(),
    publisherLagMs: Math.round(report.maxLagMs * 10) / 10,
    drained,
    cpu: cpuUse,
    ...tracker.account(report.published, report.nacked),
  };
}
