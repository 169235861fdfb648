import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { randomUUID } from 'node:crypto';
import { MemoryBusHub, MemoryNodeBus } from '../../src/cluster/memory-node-bus.js';
import type { BusState, NodeBus } from '../../src/cluster/node-bus.js';
import { ErrorCode } from '../../src/errors.js';
import { collector, head, nodeBusContract, type BusTestbed } from '../helpers/node-bus-contract.js';

// The memory bus delivers on microtasks, which fake timers leave alone: nothing here waits on a clock.
beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

const PREFIX = 'unit:';

function testbed(hub = new MemoryBusHub()): BusTestbed {
  const nodes: NodeBus[] = [];
  return {
    node: async (nodeId) => {
      const bus = new MemoryNodeBus({ hub, nodeId, keyPrefix: PREFIX });
      nodes.push(bus);
      return bus;
    },
    publishRaw: async (user, payload) => hub.publish(`${PREFIX}bus:{${user}}`, payload),
    subscribers: async (user) => hub.subscribers(`${PREFIX}bus:{${user}}`),
    user: () => `u-${randomUUID().slice(0, 8)}`,
    close: async () => {
      await Promise.all(nodes.map((node) => node.close()));
    },
  };
}

nodeBusContract('memory', async () => testbed());

describe('MemoryNodeBus outage', () => {
  it('loses what is published to or by a disconnected node, reports the outage, and keeps its subscriptions', async () => {
    const hub = new MemoryBusHub();
    const a = new MemoryNodeBus({ hub, nodeId: 'node-a' });
    const b = new MemoryNodeBus({ hub, nodeId: 'node-b' });
    const states: BusState[] = [];
    const stop = b.onState((state) => states.push(state));
    const atA = collector();
    const atB = collector();
    await a.subscribe('alice', atA.handler);
    await b.subscribe('alice', atB.handler);
    b.setConnected(false);
    await a.publish('alice', head(1));
    await expect(b.publish('alice', head(2))).rejects.toMatchObject({ code: ErrorCode.storeUnavailable });
    b.setConnected(true);
    await a.publish('alice', head(3));
    await b.publish('alice', head(4));
    await atB.until(1);
    await atA.until(1);
    expect(atB.messages).toEqual([{ ...head(3), from: 'node-a' }]);
    expect(atA.messages).toEqual([{ ...head(4), from: 'node-b' }]);
    expect(states).toEqual(['disconnected', 'connected']);
    stop();
    b.setConnected(false);
    expect(states).toHaveLength(2);
    await Promise.all([a.close(), b.close()]);
  });
});
