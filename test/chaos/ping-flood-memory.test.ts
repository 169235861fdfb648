/**
 * One authenticated user cannot grow the relay's memory by provoking replies it never reads: four
 * connections that stop reading flood 64 KB `ping` frames for 10 s, reconnecting whenever the
 * relay closes them (1008 for the oversized id, 1013 send-buffer-full, or the rate limit). The
 * relay runs in a process of its own so that its resident memory (VmRSS) is its own; the growth
 * over the run is printed, and must stay under 32 MiB (a bound on memory, not on time).
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { freePort } from '../../src/process/free-port.js';
import { RelayProcess } from '../../src/process/relay-process.js';
import { SUBPROTOCOL } from '../../src/protocol/frames.js';
import { testEnv, token, uid } from '../helpers/relay.js';

const FLOOD_MS = 10_000;
const CONNECTIONS = 4;
const LIMIT_MIB = 32;
const FRAME = JSON.stringify({ type: 'ping', id: 'x'.repeat(60 * 1024) });
/** What each flooding client keeps queued on its own side at most (it never needs more to keep the relay's socket full). */
const CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024;

function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(match[1]) * 1024;
}

/** One connection that says hello, stops reading, and sends FRAME as fast as its own buffer allows until it is closed. */
function flood(url: string, user: string, until: number): Promise<number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, [SUBPROTOCOL]);
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const pump = (): void => {
      while (ws.readyState === WebSocket.OPEN && ws.bufferedAmount < CLIENT_BACKLOG_BYTES && Date.now() < until) {
        ws.send(FRAME);
        sent += 1;
      }
      if (ws.readyState === WebSocket.OPEN && Date.now() < until) timer = setTimeout(pump, 10);
      else ws.terminate();
    };
    ws.on('open', () => {
      ws.send(JSON.stringify({ type: 'hello', token: token(user) }));
      // Never read again: every reply the relay sends stays in its own buffers or the kernel's.
      ws.pause();
      pump();
    });
    ws.on('error', () => undefined);
    ws.on('close', () => {
      clearTimeout(timer);
      resolve(sent);
    });
  });
}

describe('ping flood from clients that do not read', () => {
  let relay: RelayProcess;
  let port: number;

  beforeAll(async () => {
    const adminPort = await freePort();
    port = await freePort();
    relay = await RelayProcess.start({ env: testEnv({ PORT: String(port), ADMIN_PORT: String(adminPort) }), adminPort });
  });
  afterAll(async () => {
    await relay?.stop('SIGKILL');
  });

  it(`keeps the relay's memory growth under ${LIMIT_MIB} MiB over ${FLOOD_MS / 1000} s`, { timeout: 60_000 }, async () => {
    const pid = relay.pid!;
    const user = uid('flood');
    const url = `ws://127.0.0.1:${port}/v1/stream`;
    const before = rssBytes(pid);
    let peak = before;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(pid));
    }, 100);
    const until = Date.now() + FLOOD_MS;
    let connections = 0;
    let frames = 0;
    const client = async (): Promise<void> => {
      while (Date.now() < until) {
        connections += 1;
        frames += await flood(url, user, until);
      }
    };
    try {
      await Promise.all(Array.from({ length: CONNECTIONS }, () => client()));
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, rssBytes(pid));
    const growthMiB = (peak - before) / (1024 * 1024);
    console.log(
      `[ping-flood] relay RSS ${(before / 1048576).toFixed(1)} MiB before, peak ${(peak / 1048576).toFixed(1)} MiB: ` +
        `+${growthMiB.toFixed(1)} MiB; ${connections} connections, ${frames} frames of ${FRAME.length} bytes queued by the clients`,
    );
    expect(growthMiB).toBeLessThan(LIMIT_MIB);
  });
});
