/**
 * One authenticated client cannot grow the relay's memory through the frames the relay sends
 * back: a ping's `id` is bounded, replies a client provokes never take its send buffer past
 * `SEND_BUFFER_HIGH_WATER_BYTES` (the connection is closed instead), and close reasons are cut by
 * UTF-8 bytes so that a long one cannot make `ws` throw.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { loadConfig } from '../../src/config.js';
import type { StreamRegistry } from '../../src/delivery/stream-registry.js';
import { createLogger } from '../../src/log.js';
import { SUBPROTOCOL } from '../../src/protocol/frames.js';
import { ClientConnection } from '../../src/server/client-connection.js';
import { TokenKeys } from '../../src/server/token-keys.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, token, uid, type TestRelay } from '../helpers/relay.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function relayWith(env: Record<string, string>): Promise<TestRelay> {
  const relay = await startTestRelay(testConfig(env));
  cleanups.push(() => relay.stop());
  return relay;
}

async function welcomed(relay: TestRelay): Promise<RawClient> {
  const client = await RawClient.connect(relay.url);
  cleanups.push(() => client.terminate());
  client.send({ type: 'hello', token: token(uid('frames')) });
  await client.next('welcome');
  return client;
}

/** The largest `bufferedAmount` any server-side socket of this process had right after a `send`. */
function watchServerSends(): { max: () => number } {
  const proto = WebSocket.prototype as unknown as { send: (...args: unknown[]) => void };
  const original = proto.send;
  let max = 0;
  proto.send = function (this: WebSocket & { _isServer?: boolean }, ...args: unknown[]) {
    original.apply(this, args);
    if (this._isServer === true) max = Math.max(max, this.bufferedAmount);
  };
  cleanups.push(() => {
    proto.send = original;
  });
  return { max: () => max };
}

/** One masked client text frame (mask key 0, so the payload goes as is). */
function clientTextFrame(text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const length = payload.length;
  const header = length < 126 ? Buffer.from([0x81, 0x80 | length]) : Buffer.from([0x81, 0x80 | 126, length >> 8, length & 0xff]);
  return Buffer.concat([header, Buffer.alloc(4), payload]);
}

/** The close frame in a stream of unmasked server frames, if it has arrived. */
function findClose(stream: Buffer): { code: number; reason: string } | undefined {
  let offset = 0;
  while (offset + 2 <= stream.length) {
    const opcode = stream[offset]! & 0x0f;
    let length = stream[offset + 1]! & 0x7f;
    let start = offset + 2;
    if (length === 126) {
      if (start + 2 > stream.length) return undefined;
      length = stream.readUInt16BE(start);
      start += 2;
    } else if (length === 127) {
      if (start + 8 > stream.length) return undefined;
      length = Number(stream.readBigUInt64BE(start));
      start += 8;
    }
    if (start + length > stream.length) return undefined;
    if (opcode === 0x8) return { code: stream.readUInt16BE(start), reason: stream.subarray(start + 2, start + length).toString('utf8') };
    offset = start + length;
  }
  return undefined;
}

/**
 * A client on a plain TCP socket that does the upgrade and the hello by hand, reads until the
 * `welcome`, then stops reading (`pause`): from then on nothing the relay sends is taken off the
 * wire, so the kernel buffers fill and then the relay's own send buffer for it.
 */
async function nonReadingClient(relay: TestRelay): Promise<{ socket: net.Socket; received: () => Buffer }> {
  const socket = net.connect(relay.relay.port, '127.0.0.1');
  socket.on('error', () => undefined);
  cleanups.push(() => {
    socket.destroy();
  });
  await once(socket, 'connect');
  socket.write(
    [
      'GET /v1/stream HTTP/1.1',
      'Host: 127.0.0.1',
      'Upgrade: websocket',
      'Connection: Upgrade',
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
      'Sec-WebSocket-Version: 13',
      `Sec-WebSocket-Protocol: ${SUBPROTOCOL}`,
      '',
      '',
    ].join('\r\n'),
  );
  const chunks: Buffer[] = [];
  let upgraded = false;
  let welcomed = false;
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      if (welcomed) return;
      const text = Buffer.concat(chunks).toString('latin1');
      if (!upgraded && text.includes('\r\n\r\n')) {
        if (!text.startsWith('HTTP/1.1 101')) return reject(new Error(`upgrade refused: ${text.split('\r\n')[0]}`));
        upgraded = true;
        socket.write(clientTextFrame(JSON.stringify({ type: 'hello', token: token(uid('flood')) })));
      }
      if (text.includes('"type":"welcome"')) {
        welcomed = true;
        socket.pause();
        resolve();
      }
    });
  });
  // Server frames start after the 101 response's headers.
  const frames = (): Buffer => {
    const all = Buffer.concat(chunks);
    return all.subarray(all.indexOf('\r\n\r\n') + 4);
  };
  return { socket, received: frames };
}

describe('ping id', () => {
  let relay: TestRelay;
  beforeEach(async () => {
    relay = await relayWith({});
  });

  it('echoes a string id of 64 characters and a number', async () => {
    const client = await welcomed(relay);
    const id = 'i'.repeat(64);
    client.send({ type: 'ping', id });
    expect(await client.next('pong')).toEqual({ type: 'pong', id });
    client.send({ type: 'ping', id: -1.5 });
    expect(await client.next('pong')).toEqual({ type: 'pong', id: -1.5 });
    client.send({ type: 'ping' });
    expect(await client.next('pong')).toEqual({ type: 'pong' });
    expect(client.closedWith).toBeUndefined();
  });

  it.each([
    ['a 65-character string', 'i'.repeat(65)],
    ['a 60 KB string', 'i'.repeat(60_000)],
    ['an object', { nested: 'x'.repeat(1_000) }],
    ['an array', [1, 2, 3]],
    ['a boolean', true],
    ['null', null],
  ])('refuses %s as a bad frame: 1008 naming the field, no pong', async (_name, id) => {
    const client = await welcomed(relay);
    client.send({ type: 'ping', id });
    const closed = await client.closeCode();
    expect(closed.code).toBe(1008);
    expect(closed.reason.startsWith('id: ')).toBe(true);
    expect(client.frames.filter((frame) => frame.type === 'pong')).toHaveLength(0);
  });
});

describe('send buffer', () => {
  it('closes a client that floods pings and never reads with 1013 send-buffer-full, never buffering past the mark', async () => {
    const highWater = 64 * 1024;
    const relay = await relayWith({
      SEND_BUFFER_HIGH_WATER_BYTES: String(highWater),
      FRAME_RATE_PER_SEC: '10000000',
      FRAME_BURST: '10000000',
    });
    const closes: number[] = [];
    relay.relay.events.on('connection-closed', (code) => closes.push(code));
    const sends = watchServerSends();
    const { socket, received } = await nonReadingClient(relay);

    // 500 pings (64-character ids, ~90-byte pongs) per write, until the relay closes the connection.
    const batch = Buffer.concat(Array.from({ length: 500 }, () => clientTextFrame(JSON.stringify({ type: 'ping', id: 'p'.repeat(64) }))));
    let written = 0;
    while (closes.length === 0 && written < 300_000) {
      if (!socket.write(batch)) await Promise.race([once(socket, 'drain'), new Promise((resolve) => setTimeout(resolve, 200))]);
      written += 500;
    }
    expect(closes).toEqual([1013]);
    expect(sends.max()).toBeLessThanOrEqual(highWater);
    expect(sends.max()).toBeGreaterThan(highWater - 200);

    // Read again: the pongs sent before the limit, then the close frame with its reason.
    socket.resume();
    let close: { code: number; reason: string } | undefined;
    for (let attempt = 0; attempt < 100 && close === undefined; attempt += 1) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      close = findClose(received());
    }
    expect(close?.code).toBe(1013);
    expect(close?.reason).toMatch(/^retry-after=\d+ send-buffer-full$/);
  });

  it('keeps answering a client that reads its pongs, at the same rate', async () => {
    const relay = await relayWith({ SEND_BUFFER_HIGH_WATER_BYTES: String(64 * 1024), FRAME_RATE_PER_SEC: '100000', FRAME_BURST: '100000' });
    const client = await welcomed(relay);
    for (let ping = 0; ping < 5_000; ping += 1) client.send({ type: 'ping', id: ping });
    for (let pong = 0; pong < 5_000; pong += 1) expect(await client.next('pong')).toEqual({ type: 'pong', id: pong });
    expect(client.closedWith).toBeUndefined();
  });
});

describe('close reasons', () => {
  it('sends a reason of 100 "é" (200 bytes) without throwing, cut to 61 characters (122 bytes)', async () => {
    const server = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    await once(server, 'listening');
    const connections: ClientConnection[] = [];
    server.on('connection', (ws) => {
      const config = loadConfig({ JWT_SECRET: 'close-reason-secret-0123456789-abcdefghijklmnop' });
      connections.push(
        new ClientConnection(ws, {
          config,
          registry: {} as StreamRegistry,
          logger: createLogger('silent'),
          headerIdentity: undefined,
          tokenKeys: new TokenKeys(config.jwt),
          retryAfterMs: () => 1_000,
          onHelloSettled: () => undefined,
          onClose: () => undefined,
        }),
      );
    });
    const client = await RawClient.connect(`ws://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    cleanups.push(() => client.terminate());
    expect(() => connections[0]!.close(1008, 'é'.repeat(100))).not.toThrow();
    const closed = await client.closeCode();
    expect(closed.code).toBe(1008);
    expect(closed.reason).toBe('é'.repeat(61));
    expect(Buffer.byteLength(closed.reason)).toBe(122);
  });
});
