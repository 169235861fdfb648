/**
 * `npm run bench` / `npm run bench:quick`: runs plain amqplib (the broker ceiling), inbox-relay
 * end to end and RabbitMQ Web-STOMP on the same load in one run, then the connections and
 * reconnect-storm scenarios on the relay, then two relay nodes as a cluster (latency on the
 * owning vs the other node, failover), and writes Markdown, JSON and SVG to bench/results/.
 * See bench/README.md.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brokerPid, brokerVersion, ensureBrokerFdLimit, ensureWebStomp } from './env/broker.js';
import { Priorities } from './env/priority.js';
import { busyProcesses, machineInfo, openFilesLimit, pidsOf } from './env/proc.js';
import { PAYLOAD_BYTES } from './load/payload.js';
import { receivedCounter } from './load/tracker.js';
import { CONFIRM_WINDOW, Publisher } from './load/publisher.js';
import { deleteInboxes, ensureSharedTopology, leftoverBenchUsers } from './load/queues.js';
import { deleteRedisPrefix } from './lib/redis-cleanup.js';
import { formatMs } from './lib/time.js';
import { parsePlan, type Plan } from './options.js';
import { summariseProfile } from './report/cpu-profile.js';
import { renderMarkdown } from './report/markdown.js';
import { computeBacklogRatios, computeRatios, evaluateTargets, type BenchResults } from './report/results.js';
import { renderSvg } from './report/svg.js';
import { runBacklog } from './scenarios/backlog.js';
import { runCluster } from './scenarios/cluster.js';
import { CONNECT_CONCURRENCY } from './scenarios/connect-retry.js';
import { connectionsScenario } from './scenarios/connections.js';
import { runFanout } from './scenarios/fanout.js';
import type { BenchContext } from './scenarios/context.js';
import { runSuites } from './scenarios/suites.js';
import { ReceiverSlot, type SystemName } from './systems/system.js';

const RABBITMQ_URL = process.env.BENCH_RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const REDIS_URL = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';
for (const url of [RABBITMQ_URL, REDIS_URL]) {
  if (new URL(url).hostname !== '127.0.0.1') throw new Error(`the bench only talks to 127.0.0.1 (got ${url})`);
}

const started = Date.now();
/** Puts CPU priorities back; also called when the watchdog ends the run. */
let restorePriorities: () => void = () => undefined;
function log(line: string): void {
  process.stdout.write(`[${formatMs(Date.now() - started).padStart(7)}] ${line}\n`);
}

function modeOf(argv: string[]): BenchResults['mode'] {
  const rest = argv.filter(
    (a) => !['--quick', '--profile', '--cpu-prof', '--heap-snapshot', '--no-broker-restart'].includes(a) && !a.startsWith('--results'),
  );
  if (rest.length > 0) return 'custom';
  return argv.includes('--quick') ? 'quick' : 'full';
}

function writeResults(results: BenchResults, dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  const stamp = results.startedAt.replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
  const base = join(dir, `${stamp}-${results.mode}`);
  const latest = join(dir, results.mode === 'full' ? 'latest' : `latest-${results.mode}`);
  const markdown = renderMarkdown(results);
  const svg = renderSvg(results);
  const json = `${JSON.stringify(results, null, 2)}\n`;
  const files: string[] = [];
  for (const prefix of [base, latest]) {
    writeFileSync(`${prefix}.md`, `${markdown}\n![chart](${prefix === base ? `${stamp}-${results.mode}` : latest.split('/').pop()}.svg)\n`);
    writeFileSync(`${prefix}.json`, json);
    writeFileSync(`${prefix}.svg`, svg);
    files.push(`${prefix}.md`, `${prefix}.json`, `${prefix}.svg`);
  }
  return files;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let plan: Plan;
  try {
    plan = parsePlan(argv);
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`);
    process.exit(2);
  }
  if (plan.cleanup) {
    const users = await leftoverBenchUsers();
    const deleted = await deleteInboxes(RABBITMQ_URL, users, Date.now() + 600_000);
    const keys = await deleteRedisPrefix(REDIS_URL, 'bench-');
    log(`cleanup: deleted ${deleted.done} of ${users.length} leftover bench queues and ${keys} Redis keys`);
    process.exit(deleted.failed === 0 ? 0 : 1);
  }
  const runId = randomBytes(4).toString('hex').slice(0, 6);
  const results: BenchResults = {
    runId,
    mode: modeOf(argv),
    argv,
    startedAt: new Date(started).toISOString(),
    finishedAt: '',
    durationS: 0,
    machine: {},
    load: {},
    throughput: [],
    latency: [],
    backlog: [],
    connections: undefined,
    storm: undefined,
    cluster: undefined,
    ratios: [],
    backlogRatios: [],
    targets: [],
    profiles: [],
    skipped: [],
    warnings: [],
    errors: [],
  };
  mkdirSync(plan.resultsDir, { recursive: true });
  // The bench must stop by itself: past this bound it writes what it has and exits.
  const hardLimitMs = plan.quick ? 6 * 60_000 : 40 * 60_000;
  const watchdog = setTimeout(() => {
    results.errors.push(`the run hit its ${hardLimitMs / 60_000}-minute bound and was cut short`);
    restorePriorities();
    finish(results, plan);
    process.exit(3);
  }, hardLimitMs);
  watchdog.unref();

  log(`inbox-relay bench ${results.mode}, run ${runId}`);
  const benchFds = openFilesLimit('self') ?? 1024;
  if (plan.connections && benchFds < plan.connections.count + 2_000) {
    const reduced = Math.max(100, benchFds - 2_000);
    results.warnings.push(
      `the bench's open-files limit is ${benchFds}: ${plan.connections.count} connections reduced to ${reduced} (raise it with ulimit -n)`,
    );
    log(`WARNING: ${results.warnings.at(-1) ?? ''}`);
    plan.connections.count = reduced;
    plan.connections.stormCount = Math.min(plan.connections.stormCount, reduced);
  }
  const maxUsers = Math.max(0, ...plan.throughput.users, ...(plan.backlog?.users ?? []), plan.latency?.users ?? 0);
  const fdNeeded = Math.max(4_096, maxUsers * 2 + 1_000);
  const fd = await ensureBrokerFdLimit(fdNeeded, plan.brokerRestart, log);
  if (fd.limit === 1024)
    results.warnings.push(
      'RabbitMQ runs with an open-files limit of 1024 (ops/README.md, open files): classic queues may hang and Web-STOMP may run out of sockets',
    );
  if (fd.warning) results.warnings.push(fd.warning);
  if (fd.restarted) results.warnings.push(`RabbitMQ was restarted with an open-files limit of ${fd.limit ?? 'unknown'}`);

  const leftovers = await leftoverBenchUsers();
  if (leftovers.length > 0) {
    results.warnings.push(
      `${leftovers.length} queues of earlier interrupted bench runs exist (inbox.bench-*); \`node dist/bench/run.js --cleanup\` deletes them`,
    );
    log(`WARNING: ${results.warnings.at(-1) ?? ''}`);
  }
  let systems: SystemName[] = plan.systems;
  if (systems.includes('web-stomp')) {
    const skip = await ensureWebStomp(log);
    if (skip) {
      results.skipped.push(`Web-STOMP: ${skip}`);
      log(`SKIP Web-STOMP: ${skip}`);
      systems = systems.filter((s) => s !== 'web-stomp');
    }
  }
  await ensureSharedTopology(RABBITMQ_URL, 'quorum');

  const broker = brokerPid();
  const redis = pidsOf('redis-server')[0];
  results.machine = {
    ...machineInfo(),
    rabbitmq: await brokerVersion(),
    brokerFdLimit: fd.limit,
    benchFdLimit: benchFds,
    busyAtStart: await busyProcesses([process.pid]),
  };
  results.load = {
    description: `persistent ${PAYLOAD_BYTES}-byte JSON messages to the \`inbox\` exchange (routing key = user), publisher confirms (at most ${CONFIRM_WINDOW} unconfirmed, one publisher thread in the bench process; throughput runs keep at most users x window + ${CONFIRM_WINDOW} messages published and not yet received, so they measure the end-to-end rate rather than queues filling up; backlog runs publish everything first, with no consumer running, then connect all the clients), one durable queue per user with the relay's arguments, prefetch = window = ${plan.window}, every message acked one by one as soon as it is received (amqplib: basic.ack; relay: \`ack\` frame; Web-STOMP: ACK with client-individual). Consumers run in the bench process, the relay in a child process.`,
    payloadBytes: PAYLOAD_BYTES,
    confirmWindow: CONFIRM_WINDOW,
    window: plan.window,
    plan,
  };
  const publisher = await Publisher.start(RABBITMQ_URL, runId, receivedCounter);
  const priorities = new Priorities(process.getuid?.() === 0 ? plan.nice : undefined);
  restorePriorities = () => priorities.restoreAll();
  if (priorities.nice !== undefined) {
    for (const pid of [process.pid, broker, redis]) priorities.apply(pid);
    results.warnings.push(
      `the bench, its relay children, RabbitMQ and Redis ran at nice ${priorities.nice} (restored afterwards) to keep other load on the shared machine from skewing the figures; --no-renice turns this off`,
    );
    log(`raised the CPU priority (nice ${priorities.nice}) of the bench, RabbitMQ and Redis for the run`);
  }
  let phase = 0;
  const ctx: BenchContext = {
    runId,
    rabbitmqUrl: RABBITMQ_URL,
    redisUrl: REDIS_URL,
    jwtSecret: randomBytes(32).toString('hex'),
    window: plan.window,
    publisher,
    slot: new ReceiverSlot(),
    brokerPid: broker,
    redisPid: redis,
    resultsDir: plan.resultsDir,
    profileDir: plan.profile ? join(plan.resultsDir, `profiles-${runId}`) : undefined,
    profiles: results.profiles,
    heapSnapshot: plan.heapSnapshot,
    priorities,
    nextPhase: () => ++phase,
    log,
  };
  const cpuProfDir = join(plan.resultsDir, `cpu-prof-${runId}`);
  const nodeArgs = plan.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${cpuProfDir}`] : undefined;
  try {
    const suites = await runSuites(ctx, plan, systems, nodeArgs);
    results.throughput = suites.throughput;
    results.latency = suites.latency;
    results.errors.push(...suites.errors);
    if (plan.backlog) {
      const backlog = await runBacklog(ctx, plan.backlog, systems, nodeArgs);
      results.backlog = backlog.results;
      results.errors.push(...backlog.errors);
    }
    if (plan.connections) {
      const outcome = await connectionsScenario(ctx, {
        ...plan.connections,
        connectConcurrency: CONNECT_CONCURRENCY,
        ...(nodeArgs ? { nodeArgs } : {}),
      });
      results.connections = outcome.connections;
      results.storm = outcome.storm;
      if (outcome.error) results.errors.push(`connections/storm: ${outcome.error}`);
    }
    if (plan.cluster) {
      const cluster = await runCluster(ctx, plan.cluster);
      results.cluster = cluster.result;
      results.errors.push(...cluster.errors);
    }
    if (plan.fanout) {
      const fanout = await runFanout(ctx, plan.fanout, { broker: fd.limit, bench: benchFds });
      results.fanout = fanout.results;
      results.skipped.push(...fanout.skipped);
      results.errors.push(...fanout.errors);
    }
  } finally {
    await publisher.close();
    priorities.restoreAll();
  }
  if (plan.cpuProf && existsSync(cpuProfDir)) {
    for (const file of readdirSync(cpuProfDir).filter((f) => f.endsWith('.cpuprofile'))) {
      try {
        results.profiles.push(summariseProfile(join(cpuProfDir, file), 'relay child, whole life (--cpu-prof)'));
      } catch (error) {
        results.warnings.push(`could not read profile ${file}: ${(error as Error).message}`);
      }
    }
  }
  clearTimeout(watchdog);
  finish(results, plan);
  if (results.errors.length === 0) {
    for (const file of readdirSync(plan.resultsDir).filter((f) => f.startsWith(`relay-${runId}-`) && f.endsWith('.log.tmp')))
      rmSync(join(plan.resultsDir, file));
  }
  process.exit(0);
}

function finish(results: BenchResults, plan: Plan): void {
  results.finishedAt = new Date().toISOString();
  results.durationS = Math.round((Date.now() - started) / 1000);
  results.ratios = computeRatios(results.throughput, Number(results.machine.cpus ?? 2));
  results.backlogRatios = computeBacklogRatios(results.backlog, results.ratios);
  results.targets = evaluateTargets(results);
  const files = writeResults(results, plan.resultsDir);
  process.stdout.write(`\n${renderMarkdown(results)}\n`);
  log(`wrote ${files.join(', ')}`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    restorePriorities();
    process.stderr.write(`bench interrupted (${signal}); queues of this run named bench-* may remain\n`);
    process.exit(130);
  });
}

main().catch((error: unknown) => {
  restorePriorities();
  process.stderr.write(`bench failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
