/**
 * Every end of a client connection is counted once in `connection-closed` (and so in
 * inbox_relay_connections_closed_total), whoever ends it: the heartbeat cutting a client that
 * stopped answering pings (1006), the client (its code), the hello timeout (4001), a drain (1012).
 */
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { SUBPROTOCOL } from '../../src/protocol/frames.js';
import { rawDataToString } from '../../src/server/raw-data.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

async function relayWith(env: Record<string, string>): Promise<{ relay: TestRelay; closes: number[] }> {
  const relay = await startTestRelay(testConfig(env));
  cleanups.push(() => relay.stop());
  const closes: number[] = [];
  relay.relay.events.on('connection-closed', (code) => closes.push(code));
  return { relay, closes };
}

async function welcomed(relay: TestRelay): Promise<RawClient> {
  const client = await RawClient.connect(relay.url);
  client.send({ type: 'hello', token: token(uid('close')) });
  await client.next('welcome');
  return client;
}

/** A client whose WebSocket does not answer pings (ws's automatic pong is off); resolves with its close code. */
async function silentClient(relay: TestRelay): Promise<{ closed: Promise<number> }> {
  const ws = new WebSocket(relay.url, [SUBPROTOCOL], { autoPong: false });
  ws.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const welcome = new Promise<void>((resolve) =>
    ws.on('message', (data) => (rawDataToString(data).includes('"welcome"') ? resolve() : undefined)),
  );
  ws.send(JSON.stringify({ type: 'hello', token: token(uid('silent')) }));
  await welcome;
  return { closed };
}

/** Waits (bounded) until the relay holds `count` connections. */
async function connectionsSettle(relay: TestRelay, count: number): Promise<number> {
  for (let attempt = 0; attempt < 100 && relay.relay.connectionCount !== count; attempt += 1)
    await new Promise((resolve) => setTimeout(resolve, 50));
  return relay.relay.connectionCount;
}

async function closedTotal(relay: TestRelay, code: number): Promise<number | undefined> {
  const body = await (await fetch(`http://127.0.0.1:${relay.relay.adminPort}/metrics`)).text();
  const line = body.split('\n').find((text) => text.startsWith(`inbox_relay_connections_closed_total{code="${code}"}`));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('connection-closed', () => {
  it('counts a client cut by the heartbeat once, as 1006, and leaves a client that answers pings open', async () => {
    const { relay, closes } = await relayWith({ HEARTBEAT_MS: '1000' });
    const answering = await welcomed(relay);
    const silent = await silentClient(relay);
    expect(await silent.closed).toBe(1006);
    expect(closes).toEqual([1006]);
    expect(await closedTotal(relay, 1006)).toBe(1);
    expect(answering.closedWith).toBeUndefined();
    expect(relay.relay.connectionCount).toBe(1);

    answering.ws.close(1000);
    expect(await connectionsSettle(relay, 0)).toBe(0);
    expect(closes).toEqual([1006, 1000]);
  });

  it('counts a hello timeout and a drain once each, though their sockets close afterwards', async () => {
    const { relay, closes } = await relayWith({ HELLO_TIMEOUT_MS: '300' });
    const open = await welcomed(relay);
    const mute = await RawClient.connect(relay.url);
    expect((await mute.closeCode()).code).toBe(4001);
    await relay.relay.drain();
    expect((await open.closeCode()).code).toBe(1012);
    expect(closes).toEqual([4001, 1012]);
  });
});
