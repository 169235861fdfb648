/**
 * The local Redis Sentinel set (scripts/redis-sentinel.sh) does what the cluster tests rely on: a
 * client that finds the primary through the sentinels (ioredis' own Sentinel support) writes
 * there, the primary is SIGKILLed, the sentinels promote the replica and the client writes there,
 * with every write the replica had acknowledged still present; the old primary, started again,
 * comes back as a replica of the new one.
 */
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../src/wait-until.js';
import { clusterRedisSentinels, SENTINEL_NAME, sentinelSet } from '../helpers/local-cluster.js';
import { uid } from '../helpers/relay.js';

const KEYS = 200;
const clients: Redis[] = [];

function sentinelClient(): Redis {
  const client = new Redis({
    // As the global setup found them (host:port,...), which are the script's.
    sentinels: clusterRedisSentinels()
      .split(',')
      .map((address) => ({ host: address.split(':')[0]!, port: Number(address.split(':')[1]) })),
    name: SENTINEL_NAME,
    // Commands wait through the failover (queued while ioredis reconnects) instead of failing
    // after 20 reconnection attempts: the test measures how long that wait is.
    maxRetriesPerRequest: null,
  });
  // Reconnection errors while the primary is gone are expected here.
  client.on('error', () => undefined);
  clients.push(client);
  return client;
}

const directClients = new Map<number, Redis>();

/** A client of the server on `port` itself, not through the sentinels (one per port). */
function direct(port: number): Redis {
  let client = directClients.get(port);
  if (!client) {
    client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    clients.push(client);
    directClients.set(port, client);
  }
  return client;
}

/** The port of the server a client is connected to, as that server reports it. */
async function connectedPort(client: Redis): Promise<number> {
  const [, port] = (await client.config('GET', 'port')) as [string, string];
  return Number(port);
}

/** The `INFO replication` fields of the server on `port`. */
async function replication(port: number): Promise<Record<string, string>> {
  const text = await direct(port).info('replication');
  return Object.fromEntries(
    text
      .split('\r\n')
      .filter((line) => line.includes(':'))
      .map((line) => line.split(':', 2) as [string, string]),
  );
}

afterAll(() => {
  for (const client of clients) client.disconnect();
});

describe('local Redis Sentinel set', () => {
  it('fails over to the replica on a SIGKILL of the primary, and the old primary rejoins as a replica', async () => {
    expect(clusterRedisSentinels()).toBe(sentinelSet.sentinels.map(({ host, port }) => `${host}:${port}`).join(','));
    const prefix = uid('cluster-redis');
    const client = sentinelClient();
    const oldPrimary = await sentinelSet.primary();
    expect(await connectedPort(client)).toBe(sentinelSet.serverPort(oldPrimary));
    for (let i = 0; i < KEYS; i += 1) await client.set(`${prefix}:${i}`, String(i));
    // Replication is asynchronous: only writes the replica acknowledged are sure to survive the
    // primary; WAIT makes that all of them.
    expect(await client.wait(1, 5_000)).toBe(1);

    const killedAt = performance.now();
    const killed = await sentinelSet.killPrimary();
    expect(killed).toBe(oldPrimary);
    await client.set(`${prefix}:after`, 'written on the new primary');
    const failoverMs = performance.now() - killedAt;

    const newPrimary = await sentinelSet.primary();
    expect(newPrimary).not.toBe(oldPrimary);
    expect(await connectedPort(client)).toBe(sentinelSet.serverPort(newPrimary));
    expect(await direct(sentinelSet.serverPort(newPrimary)).get(`${prefix}:after`)).toBe('written on the new primary');
    const values = await client.mget(Array.from({ length: KEYS }, (_, i) => `${prefix}:${i}`));
    expect(values).toEqual(Array.from({ length: KEYS }, (_, i) => String(i)));

    // Started again it is a primary with nothing (no persistence) until the sentinels, which
    // remember it as a replica, turn it into one; then it holds the new primary's data.
    const restartedAt = performance.now();
    await sentinelSet.start(killed);
    const oldPort = sentinelSet.serverPort(killed);
    await waitUntil(
      async () => {
        const fields: Record<string, string> = await replication(oldPort).catch(() => ({}));
        return (
          fields.role === 'slave' && fields.master_port === String(sentinelSet.serverPort(newPrimary)) && fields.master_link_status === 'up'
        );
      },
      { timeoutMs: 60_000, intervalMs: 250, what: `127.0.0.1:${oldPort} to become a replica of the new primary` },
    );
    const rejoinedMs = performance.now() - restartedAt;
    expect(await direct(oldPort).get(`${prefix}:after`)).toBe('written on the new primary');
    console.log(
      `[cluster] Redis primary ${oldPrimary} SIGKILLed: a write through the sentinels succeeded on the promoted replica after ` +
        `${(failoverMs / 1000).toFixed(1)} s (down-after 1 s); the old primary, restarted, was a replica in sync after ${(rejoinedMs / 1000).toFixed(1)} s`,
    );
    await client.del(...Array.from({ length: KEYS }, (_, i) => `${prefix}:${i}`), `${prefix}:after`);
  });
});
