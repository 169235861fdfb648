/**
 * Many connections, then a reconnect storm, on one relay child:
 * - N users, a queue each (declared first, timed apart), N authenticated connections each with an
 *   active consumer (welcome is sent only once the consumer is consuming); the relay's RSS and
 *   heap before and after (after a full GC), per connection; time to connect them all; then one
 *   message to every user, to show that every consumer delivers.
 * - storm: while a publisher sends to S of those users, all S clients drop their TCP connection
 *   at once and reconnect with resume; time until every one is welcomed again; after the
 *   publisher stops and everything drained: messages lost (confirmed, never received) and
 *   duplicates (received twice).
 */
import type { QueueType } from '../../src/config.js';
import type { RelayMemory } from '../env/bench-relay.js';
import { watchCpu } from '../env/proc.js';
import { declareInboxes, deleteInboxes, queueDepths } from '../load/queues.js';
import { Tracker } from '../load/tracker.js';
import { waitUntil } from '../../src/wait-until.js';
import { forEachLimit, sleep, withTimeout } from '../lib/time.js';
import { RelaySystem } from '../systems/relay-system.js';
import { sum, type BenchContext } from './context.js';
import { connectWithRetry, type ConnectCounters } from './connect-retry.js';
import { profileWindow } from './profiling.js';
import { diffHeap, summariseHeapSnapshot, type HeapSummary } from '../report/heap-snapshot.js';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

export interface ConnectionsResult {
  queueType: QueueType;
  target: number;
  connected: number;
  failed: number;
  errors: string[];
  attempts: number;
  /** Connections in flight at once while connecting. */
  concurrency: number;
  queueSetupMs: number;
  connectMs: number;
  connectPerSec: number;
  before: RelayMemory;
  after: RelayMemory;
  rssPerConnectionBytes: number;
  heapPerConnectionBytes: number;
  deliveryCheck: { sent: number; received: number; ms: number; lost: number };
  cpu: Record<string, number>;
  /** With --heap-snapshot: what the relay's heap holds, by constructor, after the connections are up. */
  heap?: { totalBytes: number; perConnection: { name: string; count: number; bytes: number }[] };
}

export interface StormResult {
  clients: number;
  publishRate: number;
  resumedMs: number;
  allResumed: boolean;
  resumed: number;
  attempts: number;
  refusals: number;
  /** Failed attempts by reason. */
  failures: Record<string, number>;
  published: number;
  nacked: number;
  received: number;
  /**
   * Confirmed messages that neither reached the client nor were still in the user's queue once
   * the relay had stopped (its unacked messages back in the queue): the guarantee says 0.
   * undefined when the queues could not be counted.
   */
  lost: number | undefined;
  /** Confirmed messages not received within the drain bound but still in RabbitMQ afterwards (not lost). */
  stillQueued: number | undefined;
  /** Of those, messages of users whose client had not resumed. */
  stranded: number;
  /** Confirmed messages not received by the end of the drain wait. */
  notReceived: number;
  duplicates: number;
  repeatedSeqs: number;
  gaps: number;
  notRecovered: number;
  resets: number;
  drainMs: number;
  drained: boolean;
}

export interface ConnectionsOptions {
  count: number;
  stormCount: number;
  stormRate: number;
  queueType: QueueType;
  connectConcurrency: number;
  nodeArgs?: string[];
}

/** A heap snapshot of the relay, summarised; the (large) file is removed. */
async function snapshot(
  ctx: BenchContext,
  relay: { heapSnapshot(file: string): Promise<void> },
  name: string,
): Promise<HeapSummary | undefined> {
  const file = join(ctx.resultsDir, `relay-${ctx.runId}-${name}.heapsnapshot.tmp`);
  try {
    ctx.log(`connections: heap snapshot of the relay (${name})`);
    await relay.heapSnapshot(file);
    return summariseHeapSnapshot(file);
  } catch (error) {
    ctx.log(`heap snapshot failed: ${(error as Error).message}`);
    return undefined;
  } finally {
    rmSync(file, { force: true });
  }
}

export async function connectionsScenario(
  ctx: BenchContext,
  options: ConnectionsOptions,
): Promise<{ connections: ConnectionsResult | undefined; storm: StormResult | undefined; error?: string }> {
  const users = Array.from({ length: options.count }, (_, i) => `bench-${ctx.runId}-c-u${i}`);
  const system = new RelaySystem(
    {
      rabbitmqUrl: ctx.rabbitmqUrl,
      redisUrl: ctx.redisUrl,
      redisKeyPrefix: `bench-${ctx.runId}-c:`,
      jwtSecret: ctx.jwtSecret,
      queueType: options.queueType,
      window: ctx.window,
      logFile: `${ctx.resultsDir}/relay-${ctx.runId}-connections.log.tmp`,
      ...(options.nodeArgs ? { nodeArgs: options.nodeArgs } : {}),
      onStarted: (pid) => ctx.priorities.apply(pid),
    },
    ctx.slot,
  );
  let connections: ConnectionsResult | undefined;
  let storm: StormResult | undefined;
  /** Per storm user: confirmed messages not received, to be checked against the queues at the end. */
  let stormMissing: { users: string[]; missing: number[] } | undefined;
  try {
    ctx.log(`connections: declaring ${users.length} ${options.queueType} queues`);
    const setupStart = Date.now();
    const declared = await declareInboxes(ctx.rabbitmqUrl, users, options.queueType, Date.now() + 600_000);
    const queueSetupMs = Date.now() - setupStart;
    if (declared.failed > 0) throw new Error(`could not declare ${declared.failed} queues: ${declared.errors.join('; ')}`);
    ctx.log(`connections: ${users.length} queues in ${(queueSetupMs / 1000).toFixed(1)} s; starting the relay`);
    const relay = await system.startRelay();
    await sleep(1_000);
    let heapBefore: HeapSummary | undefined;
    if (ctx.heapSnapshot) heapBefore = await snapshot(ctx, relay, 'before');
    const before = await relay.memory(true);
    const clients = system.makeClients(users);
    const counters: ConnectCounters = { attempts: 0, refusals: 0, failures: {} };
    const cpu = watchCpu({ relay: relay.pid, broker: ctx.brokerPid, redis: ctx.redisPid, bench: process.pid });
    const connectProfile = await profileWindow(ctx, relay, `relay-connect-${users.length}`);
    const connectStart = Date.now();
    const outcome = await forEachLimit(
      clients,
      options.connectConcurrency,
      (client) => connectWithRetry(client, connectStart + 300_000, counters),
      connectStart + 300_000,
    );
    const connectMs = Date.now() - connectStart;
    const cpuUse = cpu.stop();
    await connectProfile.stop();
    ctx.log(`connections: ${outcome.done}/${users.length} connected in ${(connectMs / 1000).toFixed(1)} s (${outcome.failed} failed)`);
    await sleep(2_000);
    const after = await relay.memory(true);
    const connected = clients.filter((c) => c.open).length;

    // Every consumer delivers: one message to each user.
    const checkPhase = ctx.nextPhase();
    const check = new Tracker(checkPhase, users.length);
    ctx.slot.current = check;
    const checkStart = Date.now();
    const checkReport = await ctx.publisher.run({
      phase: checkPhase,
      users,
      mode: 'max',
      durationMs: 120_000,
      totalMessages: users.length,
    });
    const checkExpected = sum(checkReport.published) - checkReport.nacked.length;
    await waitUntil(() => check.received >= checkExpected, { timeoutMs: 60_000, intervalMs: 50 });
    const checkAccount = check.account(checkReport.published, checkReport.nacked);
    connections = {
      queueType: options.queueType,
      target: users.length,
      connected,
      failed: outcome.failed,
      errors: outcome.errors,
      attempts: counters.attempts,
      concurrency: options.connectConcurrency,
      queueSetupMs,
      connectMs,
      connectPerSec: Math.round(outcome.done / (connectMs / 1000)),
      before,
      after,
      rssPerConnectionBytes: Math.round((after.rss - before.rss) / Math.max(1, connected)),
      heapPerConnectionBytes: Math.round((after.heapUsed - before.heapUsed) / Math.max(1, connected)),
      deliveryCheck: { sent: checkExpected, received: check.received, ms: Date.now() - checkStart, lost: checkAccount.lost },
      cpu: cpuUse,
    };
    const heapAfter = ctx.heapSnapshot ? await snapshot(ctx, relay, 'after') : undefined;
    if (heapBefore && heapAfter) {
      const diff = diffHeap(heapBefore, heapAfter);
      connections.heap = {
        totalBytes: diff.totalBytes,
        perConnection: diff.top.map((e) => ({
          name: e.name,
          count: Math.round((e.count / connected) * 100) / 100,
          bytes: Math.round(e.bytes / connected),
        })),
      };
    }
    ctx.log(
      `connections: RSS ${(before.rss / 2 ** 20).toFixed(0)} -> ${(after.rss / 2 ** 20).toFixed(0)} MiB (${(connections.rssPerConnectionBytes / 1024).toFixed(1)} KiB/conn), heap ${(connections.heapPerConnectionBytes / 1024).toFixed(1)} KiB/conn; delivery check ${check.received}/${checkExpected}`,
    );

    // Reconnect storm.
    const stormClients = clients.slice(0, Math.min(options.stormCount, clients.length)).filter((c) => c.open);
    const stormUsers = stormClients.map((c) => c.user);
    const stormPhase = ctx.nextPhase();
    const tracker = new Tracker(stormPhase, stormUsers.length);
    ctx.slot.current = tracker;
    const stats = system.stats;
    const statsBefore = { ...stats };
    const running = ctx.publisher.run({ phase: stormPhase, users: stormUsers, mode: 'rate', rate: options.stormRate, durationMs: 180_000 });
    await sleep(3_000);
    ctx.log(`storm: dropping ${stormClients.length} connections at once`);
    const stormCounters: ConnectCounters = { attempts: 0, refusals: 0, failures: {} };
    const stormProfile = await profileWindow(ctx, relay, `relay-storm-${stormClients.length}`);
    const dropped = Date.now();
    for (const client of stormClients) client.drop();
    const stormDeadline = dropped + 120_000;
    const resumedUsers = new Set<number>();
    const resumedOutcome = await forEachLimit(
      stormClients,
      stormClients.length,
      async (client, index) => {
        await connectWithRetry(client, stormDeadline, stormCounters);
        resumedUsers.add(index);
      },
      stormDeadline,
    );
    const resumedMs = Date.now() - dropped;
    await stormProfile.stop();
    ctx.log(`storm: ${resumedOutcome.done}/${stormClients.length} resumed in ${(resumedMs / 1000).toFixed(1)} s`);
    await sleep(3_000);
    ctx.publisher.stop();
    const report = await running;
    const expected = sum(report.published) - report.nacked.length - report.unconfirmed;
    const drainStart = Date.now();
    const resumedPublished = report.published.map((count, u) => (resumedUsers.has(u) ? count : 0));
    const strandedPublished = report.published.map((count, u) => (resumedUsers.has(u) ? 0 : count));
    const expectedResumed = sum(resumedPublished) - report.nacked.filter(([u]) => resumedUsers.has(u)).length;
    const drained = await waitUntil(() => tracker.received >= expected, {
      timeoutMs: 90_000,
      intervalMs: 50,
      giveUp: () => tracker.received >= expectedResumed && Date.now() - drainStart > 15_000,
    });
    await sleep(500);
    const drainMs = Date.now() - drainStart;
    const account = tracker.account(resumedPublished, report.nacked);
    const strandedAccount = tracker.account(strandedPublished, report.nacked);
    stormMissing = { users: stormUsers, missing: report.published.map((count, u) => tracker.missing(u, count, report.nacked)) };
    storm = {
      clients: stormClients.length,
      publishRate: options.stormRate,
      resumedMs,
      allResumed: resumedOutcome.done === stormClients.length,
      resumed: resumedOutcome.done,
      attempts: stormCounters.attempts,
      refusals: stormCounters.refusals,
      failures: stormCounters.failures,
      published: sum(report.published),
      nacked: report.nacked.length,
      received: tracker.received,
      lost: undefined,
      stillQueued: undefined,
      stranded: strandedAccount.lost,
      notReceived: account.lost + strandedAccount.lost,
      duplicates: account.duplicates,
      repeatedSeqs: stats.repeatedSeqs - statsBefore.repeatedSeqs,
      gaps: stats.gaps - statsBefore.gaps,
      notRecovered: stats.notRecovered - statsBefore.notRecovered,
      resets: stats.resets - statsBefore.resets,
      drainMs,
      drained,
    };
    ctx.log(
      `storm: published ${sum(report.published)}, received ${tracker.received}, not received yet ${account.lost + strandedAccount.lost} (${strandedAccount.lost} of clients not resumed), duplicates ${account.duplicates}`,
    );
    return { connections, storm };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    ctx.log(`connections scenario failed: ${message}`);
    return { connections, storm, error: message };
  } finally {
    ctx.log('connections: closing clients, stopping the relay, deleting queues');
    await withTimeout(system.stop(), 90_000, 'stop the relay').catch((error: unknown) => ctx.log((error as Error).message));
    if (storm && stormMissing) {
      // With the relay stopped, every message it held unacked is back in its queue: what is
      // neither received nor queued is lost.
      const missing = stormMissing.missing;
      const depths = await withTimeout(
        queueDepths(ctx.rabbitmqUrl, stormMissing.users, Date.now() + 120_000),
        150_000,
        'count queues',
      ).catch(() => undefined);
      if (depths && depths.every((d) => d !== undefined)) {
        storm.stillQueued = depths.reduce<number>((acc, d, u) => acc + Math.min(d ?? 0, missing[u] ?? 0), 0);
        storm.lost = missing.reduce((acc, m, u) => acc + Math.max(0, m - (depths[u] ?? 0)), 0);
        ctx.log(
          `storm: after the relay stopped, ${storm.stillQueued} of the ${storm.notReceived} messages not received are still in their queues; lost ${storm.lost}`,
        );
      } else {
        ctx.log('storm: could not count the queues; losses unknown');
      }
    }
    const deleted = await withTimeout(deleteInboxes(ctx.rabbitmqUrl, users, Date.now() + 540_000), 600_000, 'delete queues').catch(
      (error: unknown) => ({
        done: 0,
        failed: users.length,
        errors: [(error as Error).message],
      }),
    );
    if (deleted.failed > 0)
      ctx.log(`could not delete ${deleted.failed} queues (node dist/bench/run.js --cleanup): ${deleted.errors.join('; ')}`);
  }
}
