/**
 * The admin port against a real relay: bound to loopback unless ADMIN_HOST says otherwise, and
 * with ADMIN_TOKEN set, POST /drain (and /metrics under METRICS_REQUIRE_TOKEN) refused without
 * the bearer token while /healthz and /readyz stay open. The guarded cases run against a relay
 * in a process of its own (src/process/relay-process.ts), called over its admin port as an
 * operator or Prometheus would, and drained by the CLI with the token.
 */
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../src/process/free-port.js';
import { RelayProcess } from '../../src/process/relay-process.js';
import { cli } from '../helpers/ops-cli.js';
import { RawClient } from '../helpers/raw-client.js';
import { startTestRelay, testConfig, testEnv, token, uid } from '../helpers/relay.js';

const ADMIN_TOKEN = `admin-it-${randomUUID()}`;

interface Answer {
  status: number;
  body: string;
}

async function call(adminPort: number, method: string, path: string, bearer?: string): Promise<Answer> {
  const response = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method,
    headers: bearer === undefined ? {} : { Authorization: `Bearer ${bearer}` },
  });
  return { status: response.status, body: await response.text() };
}

/** Whether a TCP connection to host:port is accepted. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.setTimeout(2_000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** An IPv4 address of this machine other than loopback, if it has one. */
function externalIPv4(): string | undefined {
  for (const addresses of Object.values(networkInterfaces())) {
    const found = addresses?.find((address) => address.family === 'IPv4' && !address.internal);
    if (found) return found.address;
  }
  return undefined;
}

/** A client that completed hello on `port` (proof that the relay serves). */
async function helloed(port: number, user: string): Promise<RawClient> {
  const client = await RawClient.connect(`ws://127.0.0.1:${port}/v1/stream`);
  client.send({ type: 'hello', token: token(user) });
  await client.next('welcome');
  return client;
}

describe('admin listener address', () => {
  it('binds 127.0.0.1 by default, whatever HOST is', async () => {
    const relay = await startTestRelay(testConfig({ HOST: '0.0.0.0' }));
    try {
      expect(relay.relay.adminHost).toBe('127.0.0.1');
      expect(await accepts('127.0.0.1', relay.relay.adminPort)).toBe(true);
      const external = externalIPv4();
      // On a machine with no other address there is nothing more to reach it by.
      if (external !== undefined) {
        expect(await accepts(external, relay.relay.port), `client port on ${external}`).toBe(true);
        expect(await accepts(external, relay.relay.adminPort), `admin port on ${external}`).toBe(false);
      }
    } finally {
      await relay.stop();
    }
  });

  it('binds ADMIN_HOST when set', async () => {
    const relay = await startTestRelay(testConfig({ ADMIN_HOST: '0.0.0.0', ADMIN_TOKEN }));
    try {
      expect(relay.relay.adminHost).toBe('0.0.0.0');
    } finally {
      await relay.stop();
    }
  });
});

describe('admin token, in-process relay', () => {
  it('leaves /metrics open without METRICS_REQUIRE_TOKEN and drains with the token', async () => {
    const relay = await startTestRelay(testConfig({ ADMIN_TOKEN }));
    try {
      const metrics = await call(relay.relay.adminPort, 'GET', '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain('inbox_relay_connections');
      expect((await call(relay.relay.adminPort, 'POST', '/drain')).status).toBe(401);
      expect(relay.relay.ready).toBe(true);
      expect(await call(relay.relay.adminPort, 'POST', '/drain', ADMIN_TOKEN)).toEqual({ status: 202, body: 'draining\n' });
      expect(relay.relay.ready).toBe(false);
    } finally {
      await relay.stop();
    }
  });
});

describe('admin token, relay in its own process', () => {
  let relay: RelayProcess;
  let port: number;
  let adminPort: number;

  beforeAll(async () => {
    [port, adminPort] = [await freePort(), await freePort()];
    relay = await RelayProcess.start({
      env: testEnv({ PORT: String(port), ADMIN_PORT: String(adminPort), ADMIN_TOKEN, METRICS_REQUIRE_TOKEN: '1' }),
      adminPort,
    });
  });
  afterAll(async () => {
    await relay?.stop('SIGKILL');
  });

  it('keeps /healthz and /readyz open', async () => {
    expect(await call(adminPort, 'GET', '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await call(adminPort, 'GET', '/readyz')).toEqual({ status: 200, body: 'ready\n' });
  });

  it('refuses /metrics without the token under METRICS_REQUIRE_TOKEN, and serves it with the token', async () => {
    expect((await call(adminPort, 'GET', '/metrics')).status).toBe(401);
    expect((await call(adminPort, 'GET', '/metrics', 'wrong-token-0123456789-abcdefghijklmnop')).status).toBe(401);
    const metrics = await call(adminPort, 'GET', '/metrics', ADMIN_TOKEN);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('inbox_relay_connections');
  });

  it('refuses POST /drain without the token or with another one (401), and the relay keeps serving', async () => {
    const user = uid('adm');
    const before = await helloed(port, user);
    const refused = await call(adminPort, 'POST', '/drain');
    expect(refused.status).toBe(401);
    expect(refused.body).not.toContain(ADMIN_TOKEN);
    expect((await call(adminPort, 'POST', '/drain', `${ADMIN_TOKEN}x`)).status).toBe(401);
    expect((await call(adminPort, 'POST', '/drain', ADMIN_TOKEN.slice(0, -1))).status).toBe(401);
    expect(relay.running).toBe(true);
    expect((await call(adminPort, 'GET', '/readyz')).status).toBe(200);
    // The connection from before is still open and a new one is served.
    before.send({ type: 'ping', id: 1 });
    expect(await before.next('pong')).toEqual({ type: 'pong', id: 1 });
    const after = await helloed(port, user);
    after.close();
    before.close();
  });

  it('CLI drain without ADMIN_TOKEN is refused and says what is missing', async () => {
    const { JWT_SECRET: _unused, ...env } = testEnv({ RABBITMQ_MANAGEMENT_URL: '' });
    const run = await cli(['drain', '--admin-url', `http://127.0.0.1:${adminPort}`], env);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/HTTP 401/);
    expect(run.stderr).toMatch(/set ADMIN_TOKEN/);
    expect(relay.running).toBe(true);
    expect((await call(adminPort, 'GET', '/readyz')).status).toBe(200);
  });

  it('CLI drain with ADMIN_TOKEN drains the node: clients get 1012 and the process exits 0', async () => {
    const user = uid('adm');
    const client = await helloed(port, user);
    const { JWT_SECRET: _unused, ...env } = testEnv({ RABBITMQ_MANAGEMENT_URL: '', ADMIN_TOKEN });
    const run = await cli(['drain', '--admin-url', `http://127.0.0.1:${adminPort}`, '--wait', '--json'], env);
    expect(run.code, run.stderr).toBe(0);
    expect(run.json()).toMatchObject({ accepted: true, drained: true });
    expect((await client.closeCode()).code).toBe(1012);
    expect(await relay.exited).toEqual({ code: 0, signal: null });
  });
});
