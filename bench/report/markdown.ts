/** The run's Markdown report: targets, ratios, then every measured figure. */
import { SYSTEM_LABELS, type SystemName } from '../systems/system.js';
import type { BenchResults } from './results.js';
import { distribution } from '../scenarios/cluster-failover.js';

const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined ? 'n/a' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const ms = (n: number | undefined): string =>
  n === undefined ? 'n/a' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : Math.round(n).toLocaleString('en-US');
const kib = (bytes: number): string => `${(bytes / 1024).toFixed(1)} KiB`;
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const label = (system: SystemName): string => SYSTEM_LABELS[system];
const cpu = (c: Record<string, number>, key: string): string => (c[key] === undefined ? '' : `${c[key]}%`);

export function renderMarkdown(r: BenchResults): string {
  const out: string[] = [];
  out.push(`# inbox-relay benchmark, ${r.startedAt.slice(0, 19).replace('T', ' ')} UTC (${r.mode})`, '');
  const m = r.machine;
  out.push(
    `Machine: ${String(m.cpus)} cores (${String(m.cpuModel)}), ${String(m.memGiB)} GiB, Node ${String(m.node)}, RabbitMQ ${String(m.rabbitmq)} (open-files limit ${String(m.brokerFdLimit)}), Redis on 127.0.0.1; everything co-located. Load average at start: ${JSON.stringify(m.loadavg)}. Run \`${r.runId}\`, ${Math.round(r.durationS)} s.`,
    '',
  );
  const busy = m.busyAtStart as { command: string; cpuPercent: number }[] | undefined;
  if (busy && busy.length > 0)
    out.push(`Other processes busy when the run started: ${busy.map((b) => `${b.command} (${b.cpuPercent}%)`).join('; ')}.`, '');
  out.push(
    `Load: ${String(r.load.description)}`,
    '',
    '## Targets',
    '',
    '| target | goal | measured | met |',
    '|---|---|---|---|',
    ...r.targets.map(
      (t) => `| ${t.name} | ${t.goal} | ${t.measured} | ${t.met === undefined ? 'not measured' : t.met ? 'yes' : '**no**'} |`,
    ),
    '',
  );
  if (r.ratios.length > 0) {
    const range = (x: { median: number; min: number; max: number; rounds: number } | undefined): string =>
      x === undefined ? 'n/a' : x.rounds > 1 ? `${fmt(x.median)} (${fmt(x.min)}-${fmt(x.max)})` : fmt(x.median);
    out.push(
      '## Throughput (messages consumed per second)',
      '',
      'Median of the rounds (range in brackets); the systems alternate round by round.',
      '',
      '| queues | users | plain amqplib (ceiling) | inbox-relay | Web-STOMP | relay / ceiling | relay / Web-STOMP |',
      '|---|---:|---:|---:|---:|---:|---:|',
      ...r.ratios.map(
        (x) =>
          `| ${x.queueType} | ${fmt(x.users)} | ${range(x.systems.amqplib)} | ${range(x.systems.relay)} | ${range(x.systems['web-stomp'])} | ${x.relayOverCeiling ?? 'n/a'} | ${x.relayOverStomp ?? 'n/a'} |`,
      ),
      '',
    );
    if (r.ratios.some((x) => x.coalesced !== undefined)) {
      out.push(
        'The same load through the relay with client acks coalesced as the SDK does by default (an ack every window / 2 = 10 messages or 50 ms, src/client/ack-coalescer.ts) instead of one per message; an extra, not one of the three systems above:',
        '',
        '| queues | users | inbox-relay, coalesced acks | / ceiling | / Web-STOMP |',
        '|---|---:|---:|---:|---:|',
        ...r.ratios.map(
          (x) =>
            `| ${x.queueType} | ${fmt(x.users)} | ${range(x.systems['relay-coalesced'])} | ${x.coalescedOverCeiling ?? 'n/a'} | ${x.coalescedOverStomp ?? 'n/a'} |`,
        ),
        '',
      );
    }
    out.push(
      '### CPU per message',
      '',
      'CPU time of each process per message consumed (µs, median of the rounds), measured over the same windows. This does not depend on how much of the machine other processes took, so it is the fairer comparison on a shared box. "CPU-bound" is the rate the 2 cores could carry if only that system ran and every core were busy: cores x 1,000,000 / total µs (an upper bound).',
      '',
      '| queues | users | system | broker | relay | Redis | bench (publisher + consumers) | total | CPU-bound msgs/s | relay / ceiling | relay / Web-STOMP |',
      '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...r.ratios.flatMap((x) =>
        Object.entries(x.systems).map(
          ([name, s]) =>
            `| ${x.queueType} | ${fmt(x.users)} | ${label(name as SystemName)} | ${s.cpuUsPerMsg.broker ?? ''} | ${s.cpuUsPerMsg.relay ?? ''} | ${s.cpuUsPerMsg.redis ?? ''} | ${s.cpuUsPerMsg.bench ?? ''} | ${s.cpuUsPerMsg.total ?? ''} | ${fmt(s.cpuBoundMsgsPerSec)} | ${name === 'relay' ? (x.cpuBoundRelayOverCeiling ?? 'n/a') : ''} | ${name === 'relay' ? (x.cpuBoundRelayOverStomp ?? 'n/a') : ''} |`,
        ),
      ),
      '',
      'Every round: published rate, accounting after the drain, and CPU over the measuring window (% of one core; machine = % of all cores; other = CPU of processes outside the bench, % of one core; wait = % of the time the main thread was runnable but had no CPU).',
      '',
      '| system | queues | users | round | consumed/s | published/s | lost | dup. | out of order | drain | CPU relay (wait) | CPU broker | CPU Redis | CPU bench | machine busy | other load |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...r.throughput.map(
        (t) =>
          `| ${label(t.system)} | ${t.queueType} | ${fmt(t.users)} | ${t.round} | ${fmt(t.msgsPerSec)} | ${fmt(t.publishPerSec)} | ${t.lost} | ${t.duplicates} | ${t.outOfOrder} | ${t.drained ? `${t.drainMs} ms` : '**not drained**'} | ${cpu(t.cpu, 'relay')}${t.cpu.relayWait === undefined ? '' : ` (${t.cpu.relayWait}%)`} | ${cpu(t.cpu, 'broker')} | ${cpu(t.cpu, 'redis')} | ${cpu(t.cpu, 'bench')} | ${cpu(t.cpu, 'machine')} | ${cpu(t.cpu, 'others')} |`,
      ),
      '',
    );
  }
  if (r.backlog.length > 0) out.push(...backlogSection(r));
  if (r.latency.length > 0) {
    const first = r.latency[0];
    out.push(
      '## Latency (due publish time to client receipt, open loop, after warm-up)',
      '',
      `${first ? `${first.queueType} queues, ${fmt(first.users)} users.` : ''} Milliseconds, HDR histogram.`,
      '',
      '| system | rate (msgs/s) | achieved | p50 | p90 | p99 | p99.9 | max | samples | lost | duplicates | CPU relay | CPU broker | machine busy | other load |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...r.latency.map(
        (l) =>
          `| ${label(l.system)} | ${fmt(l.rate)} | ${fmt(l.achievedRate)} | ${ms(l.latency?.p50Ms)} | ${ms(l.latency?.p90Ms)} | ${ms(l.latency?.p99Ms)} | ${ms(l.latency?.p999Ms)} | ${ms(l.latency?.maxMs)} | ${fmt(l.latency?.count)} | ${l.lost} | ${l.duplicates} | ${cpu(l.cpu, 'relay')} | ${cpu(l.cpu, 'broker')} | ${cpu(l.cpu, 'machine')} | ${cpu(l.cpu, 'others')} |`,
      ),
      '',
    );
  }
  const c = r.connections;
  if (c) {
    out.push(
      `## ${fmt(c.target)} concurrent connections (relay, ${c.queueType} queues, one queue and active consumer each)`,
      '',
      '| figure | value |',
      '|---|---|',
      `| connected | ${fmt(c.connected)} / ${fmt(c.target)} (${c.failed} failed, ${fmt(c.attempts)} attempts) |`,
      `| time to connect all (hello to welcome, ${c.concurrency} in flight) | ${(c.connectMs / 1000).toFixed(1)} s (${fmt(c.connectPerSec)}/s) |`,
      `| queue declaration beforehand (not in the above) | ${(c.queueSetupMs / 1000).toFixed(1)} s |`,
      `| relay RSS before / after | ${mib(c.before.rss)} / ${mib(c.after.rss)} |`,
      `| relay heap used before / after (after full GC) | ${mib(c.before.heapUsed)} / ${mib(c.after.heapUsed)} |`,
      `| relay external + array buffers after | ${mib(c.after.external)} |`,
      `| **RSS per connection** | **${kib(c.rssPerConnectionBytes)}** |`,
      `| heap per connection | ${kib(c.heapPerConnectionBytes)} |`,
      `| delivery check (one message to every user) | ${fmt(c.deliveryCheck.received)} / ${fmt(c.deliveryCheck.sent)} received in ${(c.deliveryCheck.ms / 1000).toFixed(1)} s, ${c.deliveryCheck.lost} lost |`,
      `| CPU while connecting (relay / broker / Redis / bench / other load) | ${cpu(c.cpu, 'relay')} / ${cpu(c.cpu, 'broker')} / ${cpu(c.cpu, 'redis')} / ${cpu(c.cpu, 'bench')} / ${cpu(c.cpu, 'others')} (relay waited for a CPU ${cpu(c.cpu, 'relayWait')} of the time) |`,
      '',
    );
    if (c.heap) {
      out.push(
        `What the connections added to the relay's heap (heap snapshots before and after, self sizes by constructor; ${mib(c.heap.totalBytes)} in all), per connection:`,
        '',
        '| object | count per connection | bytes per connection |',
        '|---|---:|---:|',
      );
      for (const e of c.heap.perConnection.slice(0, 20)) out.push(`| \`${e.name}\` | ${e.count} | ${fmt(e.bytes)} |`);
      out.push('');
    }
  }
  const s = r.storm;
  if (s) {
    out.push(
      `## Reconnect storm (${fmt(s.clients)} clients drop their TCP connections at once, then resume)`,
      '',
      '| figure | value |',
      '|---|---|',
      `| time until all resumed (welcome) | ${s.allResumed ? `${(s.resumedMs / 1000).toFixed(1)} s` : `**not all within ${(s.resumedMs / 1000).toFixed(0)} s**`} (${fmt(s.resumed)} / ${fmt(s.clients)}) |`,
      `| connection attempts / refusals (1013 or HTTP 503) | ${fmt(s.attempts)} / ${fmt(s.refusals)} |`,
      `| failed attempts by reason | ${failureList(s.failures)} |`,
      `| messages published during the storm (${fmt(s.publishRate)} msgs/s) | ${fmt(s.published)} (${s.nacked} refused by the broker) |`,
      `| received | ${fmt(s.received)} (${s.drained ? `drained ${(s.drainMs / 1000).toFixed(1)} s after publishing stopped` : '**not drained**'}) |`,
      `| confirmed but not received when the drain wait ended | ${fmt(s.notReceived)} (${fmt(s.stranded)} of them for clients that had not resumed) |`,
      `| of those, still in their queues once the relay stopped (not lost) | ${s.stillQueued === undefined ? 'not counted' : fmt(s.stillQueued)} |`,
      `| **lost** (confirmed, neither received nor in the queue) | **${s.lost === undefined ? 'unknown' : s.lost}** |`,
      `| duplicates delivered (same message twice) | ${s.duplicates} |`,
      `| seqs repeated / gaps in seq / not recovered / resets | ${s.repeatedSeqs} / ${s.gaps} / ${s.notRecovered} / ${s.resets} |`,
      '',
    );
  }
  if (r.cluster) out.push(...clusterSection(r.cluster));
  if (r.fanout && r.fanout.length > 0) {
    out.push(
      '## Topic fan-out',
      '',
      'N inboxes follow one pattern and a relay runs with one bench WebSocket client per follower, all welcomed (so every inbox has its consumer); then one persistent message is published to `inbox.topics`. Publish to last inbox: to the confirm, which RabbitMQ sends once every inbox has the message. Publish to clients: to the receipt of the `msg` frame by the first, the median and the last client, through the relay (each client checked to get exactly one, with the topic published to; clients ack). Receipt times are read in the bench process, one thread for all N sockets.',
      '',
      '| queue type | followers | publish to last inbox | publish to clients: first / p50 / **last** | CPU publish to last client (relay, waited for a core / broker / Redis / bench / other load) | clients connected in | setup (declare + follow) | load average |',
      '|---|---|---|---|---|---|---|---|',
      ...r.fanout.map(
        (f) =>
          `| ${f.queueType} | ${fmt(f.followers)} | ${f.publishToLastInboxMs.toFixed(1)} ms | ${f.publishToFirstClientMs.toFixed(1)} / ${f.publishToClientP50Ms.toFixed(1)} / **${f.publishToLastClientMs.toFixed(1)} ms** | ${cpu(f.cpu, 'relay')}, ${cpu(f.cpu, 'relayWait')} / ${cpu(f.cpu, 'broker')} / ${cpu(f.cpu, 'redis')} / ${cpu(f.cpu, 'bench')} / ${cpu(f.cpu, 'others')} | ${(f.connectMs / 1000).toFixed(1)} s (${fmt(f.connectAttempts)} attempts${f.connectAttempts > f.followers ? `; retried: ${failureList(f.connectFailures)}` : ''}) | ${(f.setupMs / 1000).toFixed(1)} s | ${f.loadavg.join(', ')} |`,
      ),
      '',
    );
  }
  if (r.profiles.length > 0) {
    out.push('## CPU profiles of the relay', '');
    for (const p of r.profiles) {
      out.push(
        `### ${p.label || 'relay'}`,
        '',
        `\`${p.file}\`: ${fmt(p.busyMs)} ms busy of ${fmt(p.totalMs)} ms sampled.`,
        '',
        '| where (self time) | % of busy |',
        '|---|---:|',
      );
      for (const e of p.byLocation.slice(0, 12)) out.push(`| ${e.name} | ${e.percent} |`);
      out.push('', '| function (self time) | % of busy |', '|---|---:|');
      for (const e of p.byFunction.slice(0, 15)) out.push(`| \`${e.name}\` | ${e.percent} |`);
      out.push('', '| project function (inclusive time) | % of busy |', '|---|---:|');
      for (const e of p.inclusiveProject.slice(0, 12)) out.push(`| \`${e.name}\` | ${e.percent} |`);
      out.push('');
    }
  }
  if (r.skipped.length + r.warnings.length + r.errors.length > 0) {
    out.push('## Notes', '');
    for (const line of r.skipped) out.push(`- skipped: ${line}`);
    for (const line of r.warnings) out.push(`- warning: ${line}`);
    for (const line of r.errors) out.push(`- error: ${line}`);
    out.push('');
  }
  return out.join('\n');
}

const seconds = (msValue: number): string => `${(msValue / 1000).toFixed(1)} s`;

/** Backlog drain: the ratios side by side with the closed-loop ones, then every round. */
function backlogSection(r: BenchResults): string[] {
  const cell = (x: BenchResults['backlogRatios'][number]['systems'][string] | undefined): string =>
    x === undefined ? 'n/a' : `${fmt(x.median)}${x.rounds > 1 ? ` (${fmt(x.min)}-${fmt(x.max)})` : ''} in ${seconds(x.drainMs)}`;
  const pair = (backlog: number | undefined, loop: number | undefined): string => `${backlog ?? 'n/a'} / ${loop ?? 'n/a'}`;
  const out: string[] = [
    '## Backlog drain (every inbox filled first, then all clients connect at once)',
    '',
    "As after an outage: each user's queue is filled with the backlog (published with confirms while no consumer runs), then every client connects, as fast as each system's own start allows (relay: 100 handshakes in flight, refusals retried after their retry-after; Web-STOMP: 50 connections in flight; amqplib: 32 channel opens in flight). Drain rate = messages / time from the first connect attempt to the receipt of the last message (acked at once). Median of the rounds (range in brackets) and median drain time; the systems alternate round by round. Ratios are given as backlog / closed loop, the closed-loop figure from this run's throughput phase at the same queue type and users.",
    '',
    '| queues | users | backlog per user | plain amqplib (ceiling) | inbox-relay | Web-STOMP | relay / ceiling: backlog / closed loop | relay / Web-STOMP: backlog / closed loop |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...r.backlogRatios.map(
      (x) =>
        `| ${x.queueType} | ${fmt(x.users)} | ${fmt(x.perUser)} | ${cell(x.systems.amqplib)} | ${cell(x.systems.relay)} | ${cell(x.systems['web-stomp'])} | **${pair(x.relayOverCeiling, x.closedLoopRelayOverCeiling)}** | ${pair(x.relayOverStomp, x.closedLoopRelayOverStomp)} |`,
    ),
    '',
  ];
  if (r.backlogRatios.some((x) => x.systems['relay-coalesced'] !== undefined)) {
    out.push(
      'The relay with SDK-style coalesced acks on the same backlog:',
      '',
      '| queues | users | inbox-relay, coalesced acks | / ceiling |',
      '|---|---:|---:|---:|',
      ...r.backlogRatios.map(
        (x) => `| ${x.queueType} | ${fmt(x.users)} | ${cell(x.systems['relay-coalesced'])} | ${x.coalescedOverCeiling ?? 'n/a'} |`,
      ),
      '',
    );
  }
  out.push(
    'Every round: the backlog published and counted in the queues before the clients connected, the time until every client was consuming and what arrived meanwhile, the drain, the rate once all were consuming, accounting (lost, duplicates, out of order; left in queues = messages in the queues once the clients had gone and no consumer was left, i.e. never acked), and CPU over the drain (as in the throughput rounds).',
    '',
    '| system | queues | users | round | backlog | filled at /s | queued | all consuming after | received by then | drained in | msgs/s | after all consuming /s | lost | dup. | out of order | left in queues | refusals | CPU µs/msg | CPU relay (wait) | CPU broker | CPU Redis | CPU bench | other load |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...r.backlog.map(
      (b) =>
        `| ${label(b.system)} | ${b.queueType} | ${fmt(b.users)} | ${b.round} | ${fmt(b.expected)} | ${fmt(b.prefillPerSec)} | ${b.queued === undefined ? 'n/a' : fmt(b.queued)} | ${b.connectMs} ms | ${fmt(b.receivedWhileConnecting)} | ${b.drained ? seconds(b.drainMs) : '**not drained**'} | ${fmt(b.msgsPerSec)} | ${fmt(b.afterConnectPerSec)} | ${b.lost} | ${b.duplicates} | ${b.outOfOrder} | ${b.leftInQueues === undefined ? 'n/a' : fmt(b.leftInQueues)} | ${b.refusals === undefined ? '' : fmt(b.refusals)} | ${b.cpuUsPerMsg.total ?? ''} | ${cpu(b.cpu, 'relay')}${b.cpu.relayWait === undefined ? '' : ` (${b.cpu.relayWait}%)`} | ${cpu(b.cpu, 'broker')} | ${cpu(b.cpu, 'redis')} | ${cpu(b.cpu, 'bench')} | ${cpu(b.cpu, 'others')} |`,
    ),
    '',
  );
  return out;
}

/** "reason: count, ..." most frequent first (top 6), or "none". */
function failureList(failures: Record<string, number> | undefined): string {
  const entries = Object.entries(failures ?? {}).sort((a, b) => b[1] - a[1]);
  if (entries.length === 0) return 'none';
  const shown = entries.slice(0, 6).map(([reason, count]) => `${reason.replace(/\|/g, '/')}: ${fmt(count)}`);
  if (entries.length > 6) shown.push(`${entries.length - 6} other reasons`);
  return shown.join('; ');
}

const counterList = (counters: Record<string, number>): string =>
  Object.entries(counters)
    .filter(([, value]) => value !== 0)
    .map(([series, value]) => `${series.replace(/"/g, '')} ${fmt(value)}`)
    .join(', ') || 'none moved';
const loads = (l: { before: number[]; after: number[] }): string =>
  `${l.before.map((v) => v.toFixed(2)).join(' ')} -> ${l.after.map((v) => v.toFixed(2)).join(' ')}`;

/** Two relay nodes: latency on the owning vs the other node, then failover rounds. */
function clusterSection(c: NonNullable<BenchResults['cluster']>): string[] {
  const settings = Object.entries(c.overrides)
    .map(([name, value]) => `${name}=${value}`)
    .join(', ');
  const out: string[] = [
    `## Cluster (${c.nodes} relay nodes sharing RabbitMQ, Redis and one key prefix; every user with a connection on each node)`,
    '',
    `Node A owns every user (its clients connected first and one message per user was received on A before B's clients connected; RabbitMQ's consumer list, where each tag names its node, showed A's consumer active and B's waiting on every queue). A numbers each message in Redis and sends it to its own connection; B's connection gets it from A over Redis pub/sub. Relay settings: the defaults (STREAM_LINGER_MS 5000, CLUSTER_HEARTBEAT_MS 1000, STORE_ACK_INTERVAL_MS 1000) except ${settings}. Clients ack every message as it arrives.`,
    '',
  ];
  const l = c.latency;
  if (l) {
    const row = (name: string, x: (typeof l)['owner']): string =>
      `| ${name} | \`${x.node}\` | ${ms(x.latency?.p50Ms)} | ${ms(x.latency?.p90Ms)} | ${ms(x.latency?.p99Ms)} | ${ms(x.latency?.p999Ms)} | ${ms(x.latency?.maxMs)} | ${fmt(x.latency?.count)} | ${x.lost} | ${x.duplicates} | ${x.outOfOrder} | ${x.gaps} / ${x.repeatedSeqs} / ${x.resets} |`;
    const added = (x: number | undefined): string => (x === undefined ? 'n/a' : `${x >= 0 ? '+' : ''}${ms(x)}`);
    const p = l.paired;
    out.push(
      `### Latency at ${fmt(l.rate)} msgs/s (${fmt(l.users)} users, ${l.queueType} queues; achieved ${fmt(l.achievedRate)} msgs/s)`,
      '',
      `Due publish time to client receipt, open loop, ${l.warmupMs / 1000} s warm-up then ${l.measureMs / 1000} s recorded, HDR histogram, milliseconds. Both connections of a user receive the same messages in the same window; the owning node's connection is the baseline.`,
      '',
      '| connection on | node | p50 | p90 | p99 | p99.9 | max | samples | lost | dup. | out of order | seq gaps / repeated / resets |',
      '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|',
      row('owning node (baseline)', l.owner),
      row('other node', l.other),
      `| **other node adds** | | **${added(l.addedP50Ms)}** | | **${added(l.addedP99Ms)}** | | | | | | | |`,
      `| other / owning | | ${l.ratioP50 ?? 'n/a'} x | | ${l.ratioP99 ?? 'n/a'} x | | | | | | | |`,
      '',
      `**The other node adds ${added(l.addedP50Ms)} ms at p50 and ${added(l.addedP99Ms)} ms at p99.** ${
        p
          ? `Message by message (the same message on both connections), the other node's connection got it ${ms(p.p50Ms)} ms later at p50, ${ms(p.p90Ms)} at p90, ${ms(p.p99Ms)} at p99, ${ms(p.maxMs)} at most (${fmt(p.count)} messages; ${fmt(p.secondFirst)} arrived there first).`
          : ''
      }`,
      '',
      `- ownership, RabbitMQ's view: before ${l.ownershipBefore.matching}/${fmt(l.users)} queues with A active and B waiting, after ${l.ownershipAfter.matching}/${fmt(l.users)}${l.ownershipAfter.ok ? '' : ` (**moved**, e.g. ${l.ownershipAfter.example ?? '?'})`}`,
      `- cluster counters over the phase: ${Object.entries(l.counters)
        .map(([node, counters]) => `\`${node}\`: ${counterList(counters)}`)
        .join('; ')}`,
      `- CPU over the recorded window (% of one core): relay A ${cpu(l.cpu, 'relayA')} (waited for a core ${cpu(l.cpu, 'relayAWait')}), relay B ${cpu(l.cpu, 'relayB')} (waited ${cpu(l.cpu, 'relayBWait')}), broker ${cpu(l.cpu, 'broker')}, Redis ${cpu(l.cpu, 'redis')}, bench ${cpu(l.cpu, 'bench')}; machine ${cpu(l.cpu, 'machine')} busy, other load ${cpu(l.cpu, 'others')}; load average ${loads(l.loadavg)}; publisher at most ${l.publisherLagMs} ms behind schedule${l.drained ? '' : '; **not drained**'}`,
      '',
    );
  }
  const f = c.failover;
  if (f) {
    const dist = (d: ReturnType<typeof distribution>): string => (d ? `${ms(d.p50Ms)} / ${ms(d.p99Ms)} / ${ms(d.maxMs)}` : 'n/a');
    out.push(
      `### Failover: SIGKILL of the owner (${fmt(f.users)} users, ${fmt(f.rate)} msgs/s, ${f.queueType} queues)`,
      '',
      `Each round: messages flow for ${f.preKillMs / 1000} s, the owning node is killed with SIGKILL, messages flow ${f.postKillMs / 1000} s more, then everything confirmed must arrive on the surviving node's connections (which stay connected; one that closes is reconnected with resume at once). Failover = from the kill to the survivor's first receipt of a message that no connection of the user had received before the kill and that the killed node's connection never received. "First new message's delay" = that receipt minus the later of the kill and the time the message was due: the failover without the wait for the user's next message when none was pending. "First published after the kill" = to the receipt of the first message due after the kill, which adds the wait for the user's next message (a user's messages are ${fmt((f.users / f.rate) * 1000)} ms apart). Then the killed node is started again (a new NODE_ID), its clients resume on it and its consumers wait behind the survivor's, and the next round kills the survivor: the roles alternate.`,
      '',
      `**Failover over ${f.failover?.count ?? 0} user-rounds: p50 ${ms(f.failover?.p50Ms)} ms, p99 ${ms(f.failover?.p99Ms)} ms, max ${ms(f.failover?.maxMs)} ms; the first new message's delay: p50 ${ms(f.firstNewDelay?.p50Ms)}, p99 ${ms(f.firstNewDelay?.p99Ms)}, max ${ms(f.firstNewDelay?.maxMs)} ms; first message published after the kill: p50 ${ms(f.firstPublishedAfterKill?.p50Ms)}, p99 ${ms(f.firstPublishedAfterKill?.p99Ms)} ms; ${f.lost} lost${f.noNewMessage > 0 ? `; ${f.noNewMessage} user-rounds without a new message` : ''}.**`,
      '',
      '| round | killed | survivor | ownership before (queues as expected) | failover p50 / p99 / max (ms) | delay of the first new message p50 / p99 / max (ms) | first published after the kill p50 / p99 / max (ms) | no new message | worst latency on the survivor (ms) | published | lost | dup. | out of order | survivor reconnects | survivor counters over the round | load average |',
      '|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|',
      ...f.rounds.map(
        (x) =>
          `| ${x.round} | \`${x.killed}\` | \`${x.survivor}\` | ${x.ownership.matching}/${fmt(f.users)} | ${dist(distribution(x.failoverMs))} | ${dist(distribution(x.firstNewDelayMs))} | ${dist(distribution(x.firstPublishedAfterKillMs))} | ${x.noNewMessage} | ${ms(x.worstLatencyMs)} | ${fmt(x.published)}${x.unconfirmed > 0 ? ` (${x.unconfirmed} unconfirmed)` : ''} | ${x.lost}${x.drained ? '' : ' (not drained)'} | ${x.duplicates} | ${x.outOfOrder} | ${x.survivorReconnects} | ${counterList(x.counters)} | ${loads(x.loadavg)} |`,
      ),
      '',
    );
  }
  return out;
}
