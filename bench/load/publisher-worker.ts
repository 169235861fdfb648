/**
 * The publisher thread: plain amqplib, one confirm channel, persistent messages to the `inbox`
 * exchange (routing key = user id), a unique messageId each, at most `confirmWindow` unconfirmed.
 * It runs beside the consumers so that publishing never waits on their event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import amqp from 'amqplib';
import type { ConfirmChannel } from 'amqplib';
import { INBOX_EXCHANGE } from '../../src/amqp/topology.js';
import { encodePayload } from './payload.js';
import type { PublisherCommand, PublisherEvent, RunCommand, RunReport } from './publisher-protocol.js';
import { nowUs, sleep } from '../lib/time.js';

const { url, runId, received } = workerData as { url: string; runId: string; received: Int32Array };
const port = parentPort;
if (!port) throw new Error('publisher-worker must run in a worker thread');
const post = (event: PublisherEvent): void => port.postMessage(event);

let stopRequested = false;
/** Wakes the publishing loop of the current run (set by `run`). */
let onDrain: () => void = () => undefined;

async function run(channel: ConfirmChannel, command: RunCommand): Promise<RunReport> {
  const { phase, users, mode, confirmWindow, payloadBytes } = command;
  const published = new Array<number>(users.length).fill(0);
  const nacked: [number, number][] = [];
  const total = command.totalMessages ?? Number.MAX_SAFE_INTEGER;
  const rate = command.rate ?? 1000;
  const maxInFlight = command.maxInFlight ?? Number.MAX_SAFE_INTEGER;
  const receivedAtStart = Atomics.load(received, 0);
  const inFlight = (): number => sent - (Atomics.load(received, 0) - receivedAtStart);
  const startedUs = nowUs();
  const endUs = startedUs + command.durationMs * 1000;
  let sent = 0;
  let confirmed = 0;
  let outstanding = 0;
  let maxOutstanding = 0;
  let maxLagMs = 0;
  const limitedBy = { confirms: 0, inFlight: 0, socket: 0 };
  let cursor = 0;
  let blocked = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  onDrain = () => {
    blocked = false;
    notify();
  };
  const publishOne = (dueUs: number): void => {
    const u = cursor;
    cursor = (cursor + 1) % users.length;
    const k = (published[u] ?? 0) + 1;
    published[u] = k;
    sent += 1;
    outstanding += 1;
    if (outstanding > maxOutstanding) maxOutstanding = outstanding;
    const body = encodePayload(phase, u, k, dueUs, payloadBytes);
    const ok = channel.publish(
      INBOX_EXCHANGE,
      users[u] as string,
      body,
      { persistent: true, messageId: `${runId}-${phase}-${u}-${k}`, contentType: 'application/json', timestamp: Date.now() },
      (error: unknown) => {
        outstanding -= 1;
        if (error) nacked.push([u, k]);
        else confirmed += 1;
        if (outstanding < confirmWindow) notify();
      },
    );
    if (!ok) blocked = true;
  };
  const finished = (): boolean => stopRequested || sent >= total || nowUs() >= endUs;

  if (mode === 'max') {
    while (!finished()) {
      while (outstanding < confirmWindow && !blocked && sent < total && inFlight() < maxInFlight) publishOne(nowUs());
      if (blocked) limitedBy.socket += 1;
      else if (outstanding >= confirmWindow) limitedBy.confirms += 1;
      else if (inFlight() >= maxInFlight) limitedBy.inFlight += 1;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(notify, 1);
      });
    }
  } else {
    const intervalUs = 1e6 / rate;
    let scheduled = 0;
    while (!finished()) {
      const now = nowUs();
      const due = Math.min(total, Math.floor((now - startedUs) / intervalUs) + 1);
      if (due > scheduled) maxLagMs = Math.max(maxLagMs, (now - (startedUs + scheduled * intervalUs)) / 1000);
      while (scheduled < due && outstanding < 50_000) {
        publishOne(Math.round(startedUs + scheduled * intervalUs));
        scheduled += 1;
      }
      await sleep(1);
    }
  }
  const publishMs = (nowUs() - startedUs) / 1000;
  const confirmDeadline = Date.now() + 30_000;
  while (outstanding > 0 && Date.now() < confirmDeadline) await sleep(20);
  return {
    ev: 'done',
    phase,
    published,
    nacked,
    confirmed,
    unconfirmed: outstanding,
    startedUs,
    publishMs,
    maxOutstanding,
    maxLagMs,
    limitedBy,
  };
}

async function main(): Promise<void> {
  const connection = await amqp.connect(url, { clientProperties: { connection_name: `bench publisher ${runId}` } });
  const channel = await connection.createConfirmChannel();
  channel.on('error', (error: Error) => post({ ev: 'error', message: `publisher channel: ${error.message}` }));
  channel.on('drain', () => onDrain());
  let queue = Promise.resolve();
  port!.on('message', (command: PublisherCommand) => {
    if (command.cmd === 'stop') {
      stopRequested = true;
      return;
    }
    if (command.cmd === 'close') {
      queue = queue.then(async () => {
        await connection.close().catch(() => undefined);
        port!.close();
      });
      return;
    }
    queue = queue.then(async () => {
      stopRequested = false;
      try {
        post(await run(channel, command));
      } catch (error) {
        post({ ev: 'error', message: error instanceof Error ? error.message : String(error) });
      }
    });
  });
  post({ ev: 'ready' });
}

main().catch((error: unknown) => {
  post({ ev: 'error', message: `publisher could not start: ${error instanceof Error ? error.message : String(error)}` });
  port.close();
});
