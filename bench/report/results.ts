/** The raw results of one run, the ratios between systems and the targets (bench/README.md, Targets). */
import type { BacklogResult } from '../scenarios/backlog.js';
import type { ClusterResult } from '../scenarios/cluster.js';
import type { FanoutResult } from '../scenarios/fanout.js';
import type { ConnectionsResult, StormResult } from '../scenarios/connections.js';
import type { LatencyResult, ThroughputResult } from '../scenarios/phases.js';
import type { ProfileSummary } from './cpu-profile.js';

export interface SystemSummary {
  /** Median msgs/s over the rounds. */
  median: number;
  min: number;
  max: number;
  rounds: number;
  /** Median CPU µs per message, per process and total (see cpuPerMessage). */
  cpuUsPerMsg: Record<string, number>;
  /**
   * What the machine could carry if only this system's processes ran on it and kept every core
   * busy: cores x 1e6 / total CPU µs per message. An upper bound that does not depend on the
   * other load the shared machine had during the run.
   */
  cpuBoundMsgsPerSec: number | undefined;
}

export interface Ratio {
  queueType: string;
  users: number;
  ceiling: number | undefined;
  relay: number | undefined;
  stomp: number | undefined;
  relayOverCeiling: number | undefined;
  relayOverStomp: number | undefined;
  /** The same ratios of the CPU-bound estimates. */
  cpuBoundRelayOverCeiling: number | undefined;
  cpuBoundRelayOverStomp: number | undefined;
  /** The relay with SDK-style coalesced acks (an extra, not one of the three systems the targets compare). */
  coalesced: number | undefined;
  coalescedOverCeiling: number | undefined;
  coalescedOverStomp: number | undefined;
  systems: Record<string, SystemSummary>;
}

/** One backlog suite (queue type x users): drain rates per system, with the closed-loop ratios of the same run beside them. */
export interface BacklogRatio {
  queueType: string;
  users: number;
  perUser: number;
  /** Per system: median, min and max drain msgs/s over the rounds, median drain time and CPU µs per message. */
  systems: Record<
    string,
    { median: number; min: number; max: number; rounds: number; drainMs: number; cpuUsPerMsg: Record<string, number> }
  >;
  relayOverCeiling: number | undefined;
  relayOverStomp: number | undefined;
  coalescedOverCeiling: number | undefined;
  /** The throughput (closed-loop) ratios at the same queue type and users in this run, when measured. */
  closedLoopRelayOverCeiling: number | undefined;
  closedLoopRelayOverStomp: number | undefined;
}

export interface Target {
  name: string;
  goal: string;
  measured: string;
  /** undefined: not measured in this run. */
  met: boolean | undefined;
}

export interface BenchResults {
  runId: string;
  mode: 'full' | 'quick' | 'custom';
  argv: string[];
  startedAt: string;
  finishedAt: string;
  durationS: number;
  machine: Record<string, unknown>;
  load: Record<string, unknown>;
  throughput: ThroughputResult[];
  latency: LatencyResult[];
  connections: ConnectionsResult | undefined;
  storm: StormResult | undefined;
  /** Two relay nodes: latency on the owning vs the other node, and failover. */
  cluster: ClusterResult | undefined;
  /** Topic fan-out runs (absent in results written before topics existed). */
  fanout?: FanoutResult[];
  /** Backlog drain rounds. */
  backlog: BacklogResult[];
  ratios: Ratio[];
  backlogRatios: BacklogRatio[];
  targets: Target[];
  profiles: ProfileSummary[];
  skipped: string[];
  warnings: string[];
  errors: string[];
}

const round2 = (n: number): number => Math.round(n * 100) / 100;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : Math.round(((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2);
}

function summarise(runs: readonly ThroughputResult[], cores: number): SystemSummary | undefined {
  if (runs.length === 0) return undefined;
  const rates = runs.map((r) => r.msgsPerSec);
  const cpuUsPerMsg: Record<string, number> = {};
  for (const key of new Set(runs.flatMap((r) => Object.keys(r.cpuUsPerMsg)))) {
    const values = runs.map((r) => r.cpuUsPerMsg[key]).filter((v): v is number => v !== undefined);
    if (values.length > 0) cpuUsPerMsg[key] = median(values);
  }
  const total = cpuUsPerMsg.total;
  return {
    median: median(rates),
    min: Math.min(...rates),
    max: Math.max(...rates),
    rounds: runs.length,
    cpuUsPerMsg,
    cpuBoundMsgsPerSec: total ? Math.round((cores * 1e6) / total) : undefined,
  };
}

export function computeRatios(throughput: readonly ThroughputResult[], cores: number): Ratio[] {
  const keys = new Map<string, { queueType: string; users: number }>();
  for (const r of throughput) keys.set(`${r.queueType}/${r.users}`, { queueType: r.queueType, users: r.users });
  return [...keys.values()].map(({ queueType, users }) => {
    const systems: Record<string, SystemSummary> = {};
    for (const name of ['amqplib', 'relay', 'web-stomp', 'relay-coalesced']) {
      const summary = summarise(
        throughput.filter((r) => r.queueType === queueType && r.users === users && r.system === name),
        cores,
      );
      if (summary) systems[name] = summary;
    }
    const ceiling = systems.amqplib?.median;
    const relay = systems.relay?.median;
    const stomp = systems['web-stomp']?.median;
    const bound = (name: string): number | undefined => systems[name]?.cpuBoundMsgsPerSec;
    const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b ? round2(a / b) : undefined);
    return {
      queueType,
      users,
      ceiling,
      relay,
      stomp,
      relayOverCeiling: ratio(relay, ceiling),
      relayOverStomp: ratio(relay, stomp),
      cpuBoundRelayOverCeiling: ratio(bound('relay'), bound('amqplib')),
      cpuBoundRelayOverStomp: ratio(bound('relay'), bound('web-stomp')),
      coalesced: systems['relay-coalesced']?.median,
      coalescedOverCeiling: ratio(systems['relay-coalesced']?.median, ceiling),
      coalescedOverStomp: ratio(systems['relay-coalesced']?.median, stomp),
      systems,
    };
  });
}

export function computeBacklogRatios(backlog: readonly BacklogResult[], closedLoop: readonly Ratio[]): BacklogRatio[] {
  const keys = new Map<string, { queueType: string; users: number; perUser: number }>();
  for (const r of backlog)
    keys.set(`${r.queueType}/${r.users}/${r.perUser}`, { queueType: r.queueType, users: r.users, perUser: r.perUser });
  return [...keys.values()].map(({ queueType, users, perUser }) => {
    const systems: BacklogRatio['systems'] = {};
    for (const name of ['amqplib', 'relay', 'web-stomp', 'relay-coalesced']) {
      const runs = backlog.filter(
        (r) => r.queueType === queueType && r.users === users && r.perUser === perUser && r.system === name && r.drained,
      );
      if (runs.length === 0) continue;
      const rates = runs.map((r) => r.msgsPerSec);
      const cpuUsPerMsg: Record<string, number> = {};
      for (const key of new Set(runs.flatMap((r) => Object.keys(r.cpuUsPerMsg)))) {
        const values = runs.map((r) => r.cpuUsPerMsg[key]).filter((v): v is number => v !== undefined);
        if (values.length > 0) cpuUsPerMsg[key] = median(values);
      }
      systems[name] = {
        median: median(rates),
        min: Math.min(...rates),
        max: Math.max(...rates),
        rounds: runs.length,
        drainMs: median(runs.map((r) => r.drainMs)),
        cpuUsPerMsg,
      };
    }
    const ratio = (a: string, b: string): number | undefined => {
      const x = systems[a]?.median;
      const y = systems[b]?.median;
      return x !== undefined && y ? round2(x / y) : undefined;
    };
    const loop = closedLoop.find((r) => r.queueType === queueType && r.users === users);
    return {
      queueType,
      users,
      perUser,
      systems,
      relayOverCeiling: ratio('relay', 'amqplib'),
      relayOverStomp: ratio('relay', 'web-stomp'),
      coalescedOverCeiling: ratio('relay-coalesced', 'amqplib'),
      closedLoopRelayOverCeiling: loop?.relayOverCeiling,
      closedLoopRelayOverStomp: loop?.relayOverStomp,
    };
  });
}

export function evaluateTargets(results: Pick<BenchResults, 'ratios' | 'latency' | 'connections' | 'storm' | 'cluster'>): Target[] {
  const targets: Target[] = [];
  const at1000 = results.ratios.filter((r) => r.users === 1000);
  for (const r of at1000) {
    targets.push({
      name: `throughput, 1,000 users, ${r.queueType}: relay vs plain amqplib`,
      goal: '>= 0.75 x',
      measured: r.relayOverCeiling === undefined ? 'n/a' : `${r.relayOverCeiling} x (${r.relay} vs ${r.ceiling} msgs/s)`,
      met: r.relayOverCeiling === undefined ? undefined : r.relayOverCeiling >= 0.75,
    });
    targets.push({
      name: `throughput, 1,000 users, ${r.queueType}: relay vs Web-STOMP`,
      goal: '>= 2 x',
      measured: r.relayOverStomp === undefined ? 'n/a' : `${r.relayOverStomp} x (${r.relay} vs ${r.stomp} msgs/s)`,
      met: r.relayOverStomp === undefined ? undefined : r.relayOverStomp >= 2,
    });
  }
  if (at1000.length === 0)
    targets.push({ name: 'throughput at 1,000 users', goal: '>= 0.75 x ceiling, >= 2 x Web-STOMP', measured: 'not run', met: undefined });
  const p99 = (system: string): number | undefined => results.latency.find((l) => l.rate === 1000 && l.system === system)?.latency?.p99Ms;
  const relayP99 = p99('relay');
  const ceilingP99 = p99('amqplib');
  targets.push({
    name: 'p99 latency at 1,000 msgs/s: relay minus ceiling',
    goal: '<= 10 ms',
    measured:
      relayP99 === undefined || ceilingP99 === undefined ? 'n/a' : `${round2(relayP99 - ceilingP99)} ms (${relayP99} vs ${ceilingP99} ms)`,
    met: relayP99 === undefined || ceilingP99 === undefined ? undefined : relayP99 - ceilingP99 <= 10,
  });
  const c = results.connections;
  targets.push({
    name: `relay memory per connection (${c ? c.target.toLocaleString('en-US') : '10,000'} connections, RSS)`,
    goal: '<= 16 KiB',
    measured: c
      ? `${(c.rssPerConnectionBytes / 1024).toFixed(1)} KiB RSS, ${(c.heapPerConnectionBytes / 1024).toFixed(1)} KiB heap (${c.connected} connected)`
      : 'not run',
    met: c ? c.rssPerConnectionBytes <= 16 * 1024 && c.connected === c.target : undefined,
  });
  const s = results.storm;
  targets.push({
    name: `reconnect storm (${s ? s.clients.toLocaleString('en-US') : '5,000'} clients): resumed, nothing lost`,
    goal: '<= 30 s, 0 lost',
    measured: s
      ? `${s.allResumed ? `${(s.resumedMs / 1000).toFixed(1)} s` : `not all within ${(s.resumedMs / 1000).toFixed(0)} s`}, ${s.resumed}/${s.clients} resumed, ${s.lost ?? 'unknown'} lost, ${s.duplicates} duplicates`
      : 'not run',
    met: s ? s.allResumed && s.resumedMs <= 30_000 && s.lost === 0 : undefined,
  });
  targets.push(...clusterTargets(results.cluster));
  return targets;
}

/** The cluster's targets: what a connection on another node adds to latency, and failover after SIGKILL of the owner. */
function clusterTargets(cluster: ClusterResult | undefined): Target[] {
  const l = cluster?.latency;
  const rate = l ? l.rate.toLocaleString('en-US') : '1,000';
  const added = (what: 'p50' | 'p99', limit: number): Target => {
    const extra = what === 'p50' ? l?.addedP50Ms : l?.addedP99Ms;
    const owner = what === 'p50' ? l?.owner.latency?.p50Ms : l?.owner.latency?.p99Ms;
    const other = what === 'p50' ? l?.other.latency?.p50Ms : l?.other.latency?.p99Ms;
    return {
      name: `cluster, ${rate} msgs/s: ${what} latency on another node minus on the owning node`,
      goal: `<= ${limit} ms`,
      measured: extra === undefined ? (l ? 'n/a' : 'not run') : `${extra} ms (${other} vs ${owner} ms)`,
      met: extra === undefined ? undefined : extra <= limit,
    };
  };
  const f = cluster?.failover;
  const d = f?.failover;
  return [
    added('p50', 3),
    added('p99', 15),
    {
      name: 'cluster failover: owner SIGKILL to the first new message on the surviving node, p99',
      goal: '< 5 s',
      measured: d
        ? `${d.p99Ms} ms (p50 ${d.p50Ms}, max ${d.maxMs} ms; ${d.count} user-rounds${f.noNewMessage > 0 ? `, ${f.noNewMessage} without a new message` : ''})`
        : f
          ? 'n/a'
          : 'not run',
      met: d ? d.p99Ms < 5_000 && f.noNewMessage === 0 : undefined,
    },
    {
      name: 'cluster failover: confirmed messages never received on the surviving node',
      goal: '0',
      measured: f ? `${f.lost} (${f.rounds.length} rounds)` : 'not run',
      met: f ? f.lost === 0 && f.rounds.length > 0 : undefined,
    },
  ];
}
