/**
 * SocketWriter against a fake `ws` whose buffer only grows until the test drains it: the send
 * buffer never passes the high-water mark because of a reply, and msg frames pause and resume.
 */
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import { SocketWriter } from '../../src/server/socket-writer.js';

class FakeWs {
  bufferedAmount = 0;
  readonly sent: string[] = [];
  private callbacks: ((error?: Error) => void)[] = [];

  send(frame: string, callback?: (error?: Error) => void): void {
    this.sent.push(frame);
    this.bufferedAmount += Buffer.byteLength(frame);
    if (callback) this.callbacks.push(callback);
  }

  /** The peer read everything: the buffer empties and pending send callbacks run. */
  drain(): void {
    this.bufferedAmount = 0;
    for (const callback of this.callbacks.splice(0)) callback();
  }
}

function writer(highWaterBytes: number): { ws: FakeWs; writer: SocketWriter; drained: number[] } {
  const ws = new FakeWs();
  const drained: number[] = [];
  return {
    ws,
    drained,
    writer: new SocketWriter(ws as unknown as WebSocket, { highWaterBytes, onDrained: () => drained.push(ws.bufferedAmount) }),
  };
}

describe('SocketWriter', () => {
  it('sends replies while they fit and refuses, queueing nothing, the first that would pass the mark', () => {
    const { ws, writer: out } = writer(1_000);
    const pong = JSON.stringify({ type: 'pong', id: 'x'.repeat(64) });
    const fits = Math.floor(1_000 / Buffer.byteLength(pong));
    const results = Array.from({ length: fits + 3 }, () => out.reply(pong));
    expect(results.filter(Boolean)).toHaveLength(fits);
    expect(results.slice(fits)).toEqual([false, false, false]);
    expect(ws.sent).toHaveLength(fits);
    expect(ws.bufferedAmount).toBeLessThanOrEqual(1_000);
  });

  it('counts a reply in bytes, not characters', () => {
    const { ws, writer: out } = writer(100);
    expect(out.reply('é'.repeat(51))).toBe(false);
    expect(out.reply('é'.repeat(50))).toBe(true);
    expect(ws.bufferedAmount).toBe(100);
  });

  it('refuses replies once msg frames filled the buffer, and sends them again after it drained', () => {
    const { ws, writer: out } = writer(1_000);
    while (!out.blocked) out.sendMsg('m'.repeat(300));
    expect(ws.sent).toHaveLength(4);
    expect(out.reply('{"type":"pong"}')).toBe(false);
    ws.drain();
    expect(out.reply('{"type":"pong"}')).toBe(true);
  });

  it('blocks msg frames at the mark and reports the drain once', () => {
    const { ws, writer: out, drained } = writer(1_000);
    out.sendMsg('m'.repeat(999));
    expect(out.blocked).toBe(false);
    out.sendMsg('m');
    expect(out.blocked).toBe(true);
    ws.drain();
    expect(out.blocked).toBe(false);
    expect(drained).toEqual([0]);
  });

  it("sends the relay's own control frames whatever the buffer holds", () => {
    const { ws, writer: out } = writer(10);
    out.sendControl('{"type":"status","state":"degraded"}');
    out.sendControl('{"type":"status","state":"ok"}');
    expect(ws.sent).toHaveLength(2);
  });
});
