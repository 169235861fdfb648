/** Command-line options of `node dist/bench/run.js` and the plan they give (full or --quick). */
import type { QueueType } from '../src/config.js';
import { QUEUE_MAX_LENGTH } from './load/queues.js';
import type { ClusterPlan } from './scenarios/cluster.js';
import type { FanoutPlan } from './scenarios/fanout.js';
import type { SystemName } from './systems/system.js';

export interface Plan {
  quick: boolean;
  systems: SystemName[];
  throughput: { queueTypes: QueueType[]; users: number[]; warmupMs: number; measureMs: number; rounds: number };
  latency: { queueType: QueueType; users: number; rates: number[]; warmupMs: number; measureMs: number } | undefined;
  connections: { count: number; stormCount: number; stormRate: number; queueType: QueueType } | undefined;
  /** Backlog drain: every inbox pre-filled with `perUser` messages, then all clients connect at once. */
  backlog: { queueTypes: QueueType[]; users: number[]; perUser: number; rounds: number } | undefined;
  /** Two relay nodes: latency on the owning vs the other node, and failover after SIGKILL of the owner. */
  cluster: ClusterPlan | undefined;
  /** Topic fan-out: one publish to `inbox.topics` copied into N following inboxes. */
  fanout: FanoutPlan | undefined;
  window: number;
  /** Profile the relay over every measuring window (V8 CPU profiler through the bench's probe). */
  profile: boolean;
  /** Run every relay child with node --cpu-prof (one profile per child, over its whole life). */
  cpuProf: boolean;
  heapSnapshot: boolean;
  /** Raise the priority of the measured processes for the run (root only); undefined: leave them. */
  nice: number | undefined;
  brokerRestart: boolean;
  /** Only delete what earlier (interrupted) runs left: inbox.bench-* queues and bench-* Redis keys. */
  cleanup: boolean;
  resultsDir: string;
}

export const USAGE = `usage: node dist/bench/run.js [--quick] [options]
  --quick                 small run (< 2 min): 100 users, quorum only, short latency run, a 100 x 100 backlog,
                          1,000 connections, 500-client storm
  --only=LIST             scenarios to run: throughput,latency,backlog,connections,cluster,fanout (default: all;
                          --quick leaves cluster and fanout out unless named)
  --fanout-followers=LIST followers per fan-out run (default 1000,10000; quorum above 2000 and classic
                          above RabbitMQ's open-files limit are skipped with the reason)
  --fanout-queue-types=LIST quorum,classic (default) for the fan-out runs
  --systems=LIST          amqplib,relay,web-stomp (default), and relay-coalesced: the relay with client
                          acks coalesced as the SDK does, an extra to the three
  --queue-types=LIST      quorum,classic for the throughput runs
  --users=LIST            user counts for the throughput runs (e.g. 100,1000)
  --latency-users=N       users for the latency runs
  --rates=LIST            open-loop rates for the latency runs (msgs/s)
  --measure-s=N           throughput measuring window (s)
  --rounds=N              throughput rounds per system, alternating systems (median reported)
  --backlog-users=LIST    user counts for the backlog drain (default 1000, quick 100)
  --backlog-per-user=N    messages queued per user before the clients connect (default 100, at most 10,000:
                          the queues' length limit)
  --backlog-queue-types=LIST
                          queue types for the backlog drain (default quorum)
  --backlog-rounds=N      backlog rounds per system, alternating systems (default 3, quick 1; median reported)
  --connections=N         concurrent connections (default 10000, quick 1000)
  --storm=N               clients in the reconnect storm (default 5000, quick 500)
  --connections-queue-type=quorum|classic
                          queue type of the connections scenario (default classic: RabbitMQ 3.10 on the
                          2-core machine stopped accepting connections with 10,000 quorum queues)
  --cluster-users=N       cluster latency: users, each with a connection on both nodes (default 100)
  --cluster-rate=N        cluster latency: msgs/s in all (default 1000)
  --failover-users=N      cluster failover: users (default 50)
  --failover-rate=N       cluster failover: msgs/s in all while the owner is killed (default 200)
  --failover-rounds=N     cluster failover: kills, alternating the node killed (default 4, quick 2)
  --profile               profile the relay over each measuring window (V8 CPU profiler) and summarise
  --cpu-prof              run every relay child with node --cpu-prof (whole life of the child)
  --heap-snapshot         take a heap snapshot of the relay once the connections are up, summarise it
  --no-broker-restart     never restart RabbitMQ to raise its open-files limit
  --no-renice             leave CPU priorities alone (default: the bench, its relay children, RabbitMQ
                          and Redis run at nice -10 for the run, restored afterwards; root only)
  --cleanup               only delete what interrupted runs left (inbox.bench-* queues, bench-* Redis keys)
  --results=DIR           where to write results (default bench/results)`;

function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function queueTypeList(name: string, value: string): QueueType[] {
  return list(value).map((type) => {
    if (type !== 'quorum' && type !== 'classic') throw new Error(`${name}: unknown type ${type}`);
    return type;
  });
}

function positive(name: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive whole number, got ${value}`);
  return n;
}

export function parsePlan(argv: readonly string[]): Plan {
  const args = new Map<string, string>();
  for (const arg of argv) {
    const match = /^--([a-z-]+)(?:=(.*))?$/.exec(arg);
    if (!match?.[1]) throw new Error(`unknown argument ${arg}\n${USAGE}`);
    args.set(match[1], match[2] ?? 'true');
  }
  const known = [
    'quick',
    'only',
    'systems',
    'queue-types',
    'users',
    'latency-users',
    'rates',
    'measure-s',
    'rounds',
    'backlog-users',
    'backlog-per-user',
    'backlog-queue-types',
    'backlog-rounds',
    'connections',
    'connections-queue-type',
    'storm',
    'cluster-users',
    'cluster-rate',
    'failover-users',
    'failover-rate',
    'failover-rounds',
    'profile',
    'cpu-prof',
    'heap-snapshot',
    'no-broker-restart',
    'fanout-followers',
    'fanout-queue-types',
    'no-renice',
    'cleanup',
    'results',
    'help',
  ];
  for (const key of args.keys()) if (!known.includes(key)) throw new Error(`unknown option --${key}\n${USAGE}`);
  if (args.has('help')) throw new Error(USAGE);
  const quick = args.has('quick');
  const only = new Set(
    list(args.get('only') ?? (quick ? 'throughput,latency,backlog,connections' : 'throughput,latency,backlog,connections,cluster,fanout')),
  );
  for (const name of only)
    if (!['throughput', 'latency', 'backlog', 'connections', 'cluster', 'fanout'].includes(name))
      throw new Error(`--only: unknown scenario ${name}`);
  const systems = list(args.get('systems') ?? 'amqplib,relay,web-stomp') as SystemName[];
  for (const name of systems)
    if (!['amqplib', 'relay', 'web-stomp', 'relay-coalesced'].includes(name)) throw new Error(`--systems: unknown system ${name}`);
  const queueTypes = queueTypeList('--queue-types', args.get('queue-types') ?? (quick ? 'quorum' : 'quorum,classic'));
  const users = list(args.get('users') ?? (quick ? '100' : '100,1000')).map((v) => positive('--users', v));
  const measureMs = positive('--measure-s', args.get('measure-s') ?? (quick ? '5' : '7')) * 1000;
  const rounds = positive('--rounds', args.get('rounds') ?? (quick ? '1' : '3'));
  const rates = list(args.get('rates') ?? '1000,3000').map((v) => positive('--rates', v));
  const latencyUsers = positive('--latency-users', args.get('latency-users') ?? (quick ? '100' : '1000'));
  const backlogUsers = list(args.get('backlog-users') ?? (quick ? '100' : '1000')).map((v) => positive('--backlog-users', v));
  const perUser = positive('--backlog-per-user', args.get('backlog-per-user') ?? '100');
  if (perUser > QUEUE_MAX_LENGTH)
    throw new Error(`--backlog-per-user must be at most ${QUEUE_MAX_LENGTH} (the queues' length limit), got ${perUser}`);
  const backlogQueueTypes = queueTypeList('--backlog-queue-types', args.get('backlog-queue-types') ?? 'quorum');
  const backlogRounds = positive('--backlog-rounds', args.get('backlog-rounds') ?? (quick ? '1' : '3'));
  const count = positive('--connections', args.get('connections') ?? (quick ? '1000' : '10000'));
  const stormCount = Math.min(count, positive('--storm', args.get('storm') ?? (quick ? '500' : '5000')));
  const connectionsQueueType = (args.get('connections-queue-type') ?? 'classic') as QueueType;
  if (connectionsQueueType !== 'quorum' && connectionsQueueType !== 'classic')
    throw new Error('--connections-queue-type must be quorum or classic');
  return {
    quick,
    systems,
    throughput: only.has('throughput')
      ? { queueTypes, users, warmupMs: quick ? 2_000 : 3_000, measureMs, rounds }
      : { queueTypes: [], users: [], warmupMs: 0, measureMs: 0, rounds: 0 },
    latency: only.has('latency')
      ? { queueType: 'quorum', users: latencyUsers, rates, warmupMs: quick ? 2_000 : 5_000, measureMs: quick ? 4_000 : 20_000 }
      : undefined,
    backlog: only.has('backlog') ? { queueTypes: backlogQueueTypes, users: backlogUsers, perUser, rounds: backlogRounds } : undefined,
    cluster: only.has('cluster')
      ? {
          queueType: 'quorum',
          latency: {
            users: positive('--cluster-users', args.get('cluster-users') ?? '100'),
            rate: positive('--cluster-rate', args.get('cluster-rate') ?? '1000'),
            warmupMs: quick ? 2_000 : 5_000,
            measureMs: quick ? 8_000 : 20_000,
          },
          failover: {
            users: positive('--failover-users', args.get('failover-users') ?? '50'),
            rate: positive('--failover-rate', args.get('failover-rate') ?? '200'),
            rounds: positive('--failover-rounds', args.get('failover-rounds') ?? (quick ? '2' : '4')),
            preKillMs: 3_000,
            postKillMs: 7_000,
          },
        }
      : undefined,
    connections:
      only.has('connections') && systems.includes('relay')
        ? { count, stormCount, stormRate: quick ? 1_000 : 2_000, queueType: connectionsQueueType }
        : undefined,
    fanout: only.has('fanout')
      ? {
          queueTypes: queueTypeList('--fanout-queue-types', args.get('fanout-queue-types') ?? 'quorum,classic'),
          followers: list(args.get('fanout-followers') ?? '1000,10000').map((v) => positive('--fanout-followers', v)),
        }
      : undefined,
    window: 20,
    profile: args.has('profile'),
    cpuProf: args.has('cpu-prof'),
    heapSnapshot: args.has('heap-snapshot'),
    brokerRestart: !args.has('no-broker-restart'),
    cleanup: args.has('cleanup'),
    nice: args.has('no-renice') ? undefined : -10,
    resultsDir: args.get('results') ?? 'bench/results',
  };
}
