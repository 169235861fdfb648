import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { NumberedEntry } from '../../src/cluster/bus-message.js';
import { MemoryBusHub, MemoryNodeBus } from '../../src/cluster/memory-node-bus.js';
import type { BusMessage } from '../../src/cluster/bus-message.js';
import { PEER_EXPIRY_BEATS, PeerLink, type LinkedStream } from '../../src/cluster/peer-link.js';
import { backgroundClock } from '../../src/delivery/background-clock.js';
import { silentLogger } from '../../src/log.js';
import { RelayEvents } from '../../src/events.js';
import { elapse, settle } from '../helpers/delivery-fakes.js';

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const BEAT_MS = 1_000;
const USER = 'u1';

/** A stream as the link sees it, recording what the link tells it. */
class StreamDouble implements LinkedStream {
  epoch = 'e1';
  head = 0;
  ackedMark = 0;
  get forwardableAck(): number {
    return this.ackedMark;
  }
  readonly calls: string[] = [];
  polls = 0;
  peerHead(seq: number): void {
    this.calls.push(`head ${seq}`);
    if (seq > this.head) this.head = seq;
  }
  peerAcked(seq: number): void {
    this.calls.push(`acked ${seq}`);
  }
  peerDeadLetter(seq: number, reason: string): void {
    this.calls.push(`dead-letter ${seq} ${reason}`);
  }
  checkEpoch(): void {
    this.calls.push('check epoch');
  }
  async pollStore(): Promise<void> {
    this.polls += 1;
  }
}

interface Node {
  bus: MemoryNodeBus;
  stream: StreamDouble;
  link: PeerLink;
}

const hub = () => new MemoryBusHub();

async function node(shared: MemoryBusHub, id: string, events?: RelayEvents): Promise<Node> {
  const bus = new MemoryNodeBus({ hub: shared, nodeId: id });
  const stream = new StreamDouble();
  const link = new PeerLink({
    user: USER,
    bus,
    stream,
    heartbeatMs: BEAT_MS,
    clock: backgroundClock,
    logger: silentLogger(),
    ...(events ? { events } : {}),
  });
  await link.open();
  link.hello();
  await settle();
  return { bus, stream, link };
}

/** Everything published about the user, as a third node would see it. */
async function listen(shared: MemoryBusHub): Promise<BusMessage[]> {
  const seen: BusMessage[] = [];
  const bus = new MemoryNodeBus({ hub: shared, nodeId: 'observer' });
  await bus.subscribe(USER, (message) => seen.push(message));
  return seen;
}

const entries = (...seqs: number[]): NumberedEntry[] => seqs.map((seq) => ({ seq, fragment: `"id":"m${seq}"`, redelivered: false }));

describe('PeerLink', () => {
  it('finds a peer by hello and answer, on both sides', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    expect(a.link.peerIds).toEqual([]);
    const b = await node(shared, 'b');
    expect(a.link.peerIds).toEqual(['b']);
    expect(b.link.peerIds).toEqual(['a']);
  });

  it('publishes nothing it numbered while it knows no peer (a single node pays nothing)', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const seen = await listen(shared);
    a.link.numbered(entries(1, 2));
    a.link.acked(2);
    a.link.deadLetter(1, 'client-nack');
    await elapse(5 * BEAT_MS);
    expect(seen).toEqual([]);
  });

  it('hands a peer the numbered run to send from memory, and raises its head', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const b = await node(shared, 'b');
    a.stream.head = 3;
    a.link.numbered(entries(1, 2, 3));
    await settle();
    expect(b.stream.calls).toContain('head 3');
    expect(b.link.held(2)).toEqual({ fragment: '"id":"m2"', redelivered: false });
    // Acked on b: what is at or below the mark is no longer kept.
    b.link.prune(2);
    expect(b.link.held(2)).toBeUndefined();
    expect(b.link.held(3)).toBeDefined();
  });

  it('takes a run that starts past its head for a lost one: counted as a heal, the gap read from history', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const events = new RelayEvents();
    let heals = 0;
    events.on('cluster-healed', () => (heals += 1));
    const b = await node(shared, 'b', events);
    a.link.numbered(entries(1, 2));
    await settle();
    expect(heals).toBe(0);
    // Seq 3 was lost in transit.
    a.link.numbered(entries(4, 5));
    await settle();
    expect(heals).toBe(1);
    expect(b.stream.head).toBe(5);
    expect(b.link.held(3)).toBeUndefined();
    expect(b.link.held(4)).toBeDefined();
  });

  it('heals a notification lost while its bus was down: the hello on reconnect brings the head', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const b = await node(shared, 'b');
    b.bus.setConnected(false);
    a.stream.head = 7;
    a.link.numbered(entries(5, 6, 7));
    await settle();
    expect(b.stream.head).toBe(0);
    b.bus.setConnected(true);
    await settle();
    expect(b.stream.head).toBe(7);
  });

  it('sends its head every heartbeat while it has a peer, so a silent loss is found within one', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const b = await node(shared, 'b');
    // A run b never hears of (lost in transit): only the heartbeat tells.
    a.stream.head = 9;
    a.stream.ackedMark = 4;
    await elapse(BEAT_MS + 5);
    expect(b.stream.head).toBe(9);
    expect(b.stream.calls).toContain('acked 4');
  });

  it('forgets a peer silent for the expiry and stops sending heartbeats', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const b = await node(shared, 'b');
    await b.link.close();
    const seen = await listen(shared);
    await elapse((PEER_EXPIRY_BEATS + 1) * BEAT_MS);
    expect(a.link.peerIds).toEqual([]);
    // One hello on forgetting it (nobody answers), then silence.
    expect(seen.filter((m) => m.kind === 'head' && m.hello)).toHaveLength(1);
    const before = seen.length;
    await elapse(3 * BEAT_MS);
    expect(seen.length).toBe(before);
  });

  it('greets a peer that fell silent while the bus looked up, and both go on', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const b = await node(shared, 'b');
    // Everything b sends is lost for a while; its bus state never changes.
    const original = shared.publish.bind(shared);
    let muted = true;
    shared.publish = (channel, payload) => (muted && payload.includes('"from":"b"') ? undefined : original(channel, payload));
    // Long enough for a to forget b (then a greets b, which b hears), not for b to forget a.
    await elapse((PEER_EXPIRY_BEATS + 2) * BEAT_MS);
    muted = false;
    await elapse((PEER_EXPIRY_BEATS + 1) * BEAT_MS);
    expect(a.link.peerIds).toEqual(['b']);
    a.stream.head = 4;
    a.link.numbered(entries(1, 2, 3, 4));
    await settle();
    expect(b.stream.head).toBe(4);
  });

  it('forwards a burst of acks as one message with the highest mark', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    await node(shared, 'b');
    const seen = await listen(shared);
    a.link.acked(3);
    a.link.acked(5);
    a.link.acked(4);
    await settle();
    expect(seen.filter((m) => m.kind === 'acked').map((m) => m.kind === 'acked' && m.seq)).toEqual([5]);
    a.link.acked(5);
    await settle();
    expect(seen.filter((m) => m.kind === 'acked')).toHaveLength(1);
  });

  it('passes acks and dead-letter requests of a peer to its stream, in the order sent', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const b = await node(shared, 'b');
    b.stream.calls.length = 0;
    a.link.deadLetter(2, 'nack-limit');
    a.link.acked(3);
    await settle();
    expect(b.stream.calls).toEqual(['dead-letter 2 nack-limit', 'acked 3']);
  });

  it('asks its stream to check the epoch when a peer speaks of another one, and takes nothing from it', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    const b = await node(shared, 'b');
    a.stream.epoch = 'e2';
    b.stream.calls.length = 0;
    a.link.numbered(entries(1));
    await settle();
    expect(b.stream.calls).toEqual(['check epoch']);
    expect(b.link.held(1)).toBeUndefined();
  });

  it('reads the store every heartbeat while the bus is down, instead of publishing', async () => {
    const shared = hub();
    const a = await node(shared, 'a');
    await node(shared, 'b');
    a.bus.setConnected(false);
    await elapse(3 * BEAT_MS + 5);
    expect(a.stream.polls).toBe(3);
    a.bus.setConnected(true);
    await elapse(2 * BEAT_MS + 5);
    expect(a.stream.polls).toBe(3);
  });
});
