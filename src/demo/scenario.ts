/**
 * The story the demo tells, in four acts over a running relay, producer and clients:
 * steady delivery; a client's connection cut (the SDK reconnects and resumes) and another
 * client stopped and replaced (it resumes from its stored position); the relay stopped
 * (SIGTERM, it drains) and started again; the relay killed (SIGKILL) and started again.
 * Publishing goes on during each disruption. After each act it waits, bounded, until every
 * client is connected and has processed everything sent so far. The crash act is skipped
 * when too little of the time budget is left for it.
 */
import type { DemoClient } from './demo-client.js';
import type { UserLedger } from './ledger.js';
import type { Narrator } from './narrator.js';
import type { Publisher } from './publisher.js';
import { waitUntil } from '../wait-until.js';

/** What the scenario acts on. */
export interface Stage {
  readonly narrator: Narrator;
  readonly clients: readonly DemoClient[];
  readonly ledgers: readonly UserLedger[];
  readonly publisher: Publisher;
  /** Stops the relay process with `signal` and starts a new one on the same port. */
  restartRelay(signal: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  /** Aborts every wait (Ctrl-C). */
  readonly signal: AbortSignal;
  /** Epoch ms after which waits give up at once, so the demo ends on time. */
  readonly deadline: number;
}

/** Longest one act waits for the clients to catch up. */
const CATCH_UP_MS = 15_000;
/** The crash act needs about this long on a busy machine (a relay start alone can take 10 s). */
const CRASH_ACT_MS = 15_000;
/** The whole run publishes for about this long, spread over the rounds. */
const PUBLISHING_MS = 4_000;
const MAX_PAUSE_MS = 120;

async function settle(stage: Stage): Promise<void> {
  const budget = Math.min(CATCH_UP_MS, stage.deadline - Date.now());
  const started = Date.now();
  const done = await waitUntil(() => stage.clients.every((client) => client.isOpen) && stage.ledgers.every((ledger) => ledger.complete), {
    timeoutMs: Math.max(0, budget),
    signal: stage.signal,
  });
  const waited = Date.now() - started;
  if (done) {
    stage.narrator.say('demo', `all clients connected and caught up (${stage.publisher.published} per user) in ${waited} ms`);
    return;
  }
  const missing = stage.ledgers.reduce((sum, ledger) => sum + ledger.lost, 0);
  const offline = stage.clients.filter((client) => !client.isOpen).map((client) => client.name);
  const why = [
    missing > 0 ? `${missing} message(s) not yet processed` : '',
    offline.length > 0 ? `not connected: ${offline.join(', ')}` : '',
  ];
  stage.narrator.warn('demo', `gave up waiting after ${waited} ms: ${why.filter(Boolean).join('; ')}`);
}

/** Runs the four acts for `messages` per user. */
export async function runScenario(stage: Stage, messages: number): Promise<void> {
  const { narrator, clients, publisher } = stage;
  const mark = (fraction: number): number => Math.round(messages * fraction);
  const pauseMs = Math.min(MAX_PAUSE_MS, Math.floor(PUBLISHING_MS / messages));
  // Each disruption lands halfway through its act's publishing, with messages in flight.
  const act = async (end: number, disrupt: () => Promise<void>): Promise<void> => {
    const start = publisher.published;
    await publisher.publishUpTo(start + Math.floor((end - start) / 2), pauseMs);
    await Promise.all([disrupt(), publisher.publishUpTo(end, pauseMs)]);
    await settle(stage);
  };

  narrator.say('demo', '--- act 1: steady delivery');
  await publisher.publishUpTo(mark(0.25), pauseMs);
  await settle(stage);

  narrator.say('demo', `--- act 2: a client loses its connection${clients.length > 1 ? '; another is stopped and replaced' : ''}`);
  await act(mark(0.5), async () => {
    clients[0]?.cut();
    await clients[1]?.restart();
  });

  narrator.say('demo', '--- act 3: the relay is stopped (SIGTERM) and started again; the producer keeps publishing');
  await act(mark(0.75), () => stage.restartRelay('SIGTERM'));

  if (stage.deadline - Date.now() < CRASH_ACT_MS) {
    narrator.say('demo', '--- act 4 skipped: running late; publishing the rest without a crash');
    await publisher.publishUpTo(messages, pauseMs);
    await settle(stage);
    return;
  }
  narrator.say('demo', '--- act 4: the relay crashes (SIGKILL) and is started again');
  await act(messages, () => stage.restartRelay('SIGKILL'));
}
