/**
 * The bundled client SDK in chromium, on the browser's own WebSocket, against the real relay:
 * it receives in order, resumes after the relay restarts on the same port, and resumes from
 * localStorage after a page reload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import type { Producer } from '../../src/amqp/producer.js';
import type * as ClientModule from '../../src/client/index.js';
import { startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';
import { SKIP_NOTE, bundleClient, hasChromium, launchChromium, servePage, type ClientBundle, type PageServer } from './harness.js';

/** What the page keeps on `window` for the test to read. */
interface PageWindow {
  InboxRelayClient: typeof ClientModule;
  client: ClientModule.InboxClient;
  seen: { epoch: string; seq: number; n: number; redelivered: boolean }[];
  states: string[];
  opened: { resumed: boolean; recovered: boolean; lastSeq: number }[];
  errors: string[];
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('client bundle', () => {
  it('bundles for browsers without ws or any Node built-in', async () => {
    const bundle = await bundleClient();
    expect(bundle.inputs.some((input) => input.endsWith('src/client/index.ts'))).toBe(true);
    expect(bundle.inputs.filter((input) => /node_modules[\\/]ws[\\/]/.test(input))).toEqual([]);
    expect(bundle.inputs.filter((input) => input.startsWith('node:') || /src[\\/](server|amqp|store|delivery)[\\/]/.test(input))).toEqual(
      [],
    );
    expect(bundle.code).not.toMatch(/require\(["'](ws|node:)/);
  });
});

describe('client SDK in chromium against the relay', () => {
  let bundle: ClientBundle;
  let server: PageServer;
  let browser: Browser;
  let relay: TestRelay;
  let producer: Producer;
  const relays: TestRelay[] = [];

  beforeAll(async () => {
    if (!hasChromium) return;
    bundle = await bundleClient();
    server = await servePage(bundle.code);
    browser = await launchChromium();
    // The page's origin is allowed, as an operator allows the origins of their own pages.
    relay = await startTestRelay(testConfig({ WINDOW_DEFAULT: '8', ALLOWED_ORIGINS: new URL(server.url).origin }));
    relays.push(relay);
    producer = testProducer(relay.config);
  });
  afterAll(async () => {
    if (!hasChromium) return;
    await producer?.close();
    for (const started of relays) await started.stop();
    await browser?.close();
    await server?.close();
  });

  async function startClient(page: Page, user: string): Promise<void> {
    await page.goto(server.url);
    await page.evaluate(
      async ({ url, jwt, key }) => {
        const w = window as unknown as PageWindow;
        const { InboxClient, LocalStoragePositionStore } = w.InboxRelayClient;
        w.seen = [];
        w.states = [];
        w.opened = [];
        w.errors = [];
        const client = new InboxClient({
          url,
          token: () => jwt,
          positionStore: new LocalStoragePositionStore(key),
          reconnectInitialDelayMs: 200,
          reconnectMaxDelayMs: 1_000,
        });
        client.on('message', (m) => {
          w.seen.push({ epoch: m.epoch, seq: m.seq, n: (m.data as { n: number }).n, redelivered: m.redelivered });
        });
        client.on('state', ({ to }) => w.states.push(to));
        client.on('open', (o) => w.opened.push({ resumed: o.resumed, recovered: o.recovered, lastSeq: o.lastSeq }));
        client.on('error', (e) => w.errors.push(`${e.code}: ${e.message}`));
        w.client = client;
        await client.connect();
      },
      { url: `ws://127.0.0.1:${relay.relay.port}`, jwt: token(user), key: `inbox-relay:${user}` },
    );
  }

  function read(page: Page): Promise<Omit<PageWindow, 'InboxRelayClient' | 'client'>> {
    return page.evaluate(() => {
      const w = window as unknown as PageWindow;
      return { seen: w.seen, states: w.states, opened: w.opened, errors: w.errors };
    });
  }

  async function waitForSeen(page: Page, count: number): Promise<void> {
    try {
      await page.waitForFunction((n) => (window as unknown as PageWindow).seen.length >= n, count, { timeout: 30_000 });
    } catch (error) {
      const state = await read(page).catch(() => undefined);
      throw new Error(`waiting for ${count} messages in the page: ${(error as Error).message}\npage state: ${JSON.stringify(state)}`, {
        cause: error,
      });
    }
  }

  async function publish(user: string, from: number, to: number): Promise<void> {
    for (let n = from; n <= to; n += 1) await producer.publish(user, { n });
  }

  it.skipIf(!hasChromium)(`receives in order and resumes after a relay restart on the same port${SKIP_NOTE}`, async () => {
    const user = uid('sdk-browser');
    const page = await browser.newPage();
    try {
      await startClient(page, user);
      await publish(user, 1, 10);
      await waitForSeen(page, 10);

      // Restart: drain (clients get 1012), publish while it is down, start again on the same port.
      const config = { ...relay.config, port: relay.relay.port };
      await relay.stop();
      await publish(user, 11, 20);
      relay = await startTestRelay(config);
      relays.push(relay);
      await waitForSeen(page, 20);
      await publish(user, 21, 25);
      await waitForSeen(page, 25);
      await page.waitForTimeout(200);

      const state = await read(page);
      expect(state.seen.map((m) => m.n)).toEqual(range(1, 25));
      expect(state.seen.map((m) => m.seq)).toEqual(range(1, 25));
      expect(new Set(state.seen.map((m) => m.epoch)).size).toBe(1);
      expect(state.states).toEqual(expect.arrayContaining(['connecting', 'open', 'reconnecting']));
      expect(state.opened.at(-1)).toMatchObject({ resumed: true, recovered: true, lastSeq: 10 });
      expect(state.errors).toEqual([]);
    } finally {
      await page.close();
    }
  });

  it.skipIf(!hasChromium)(`resumes from localStorage after a page reload${SKIP_NOTE}`, async () => {
    const user = uid('sdk-reload');
    const page = await browser.newPage();
    try {
      await startClient(page, user);
      await publish(user, 1, 5);
      await waitForSeen(page, 5);
      // Let the ack reach the relay before the page goes away (the position is saved already).
      await page.evaluate(() => (window as unknown as PageWindow).client.close());

      await publish(user, 6, 9);
      await startClient(page, user);
      await waitForSeen(page, 4);
      await page.waitForTimeout(200);
      const state = await read(page);
      expect(state.opened).toEqual([{ resumed: true, recovered: true, lastSeq: 5 }]);
      expect(state.seen.map((m) => m.n)).toEqual(range(6, 9));
      expect(state.seen.map((m) => m.seq)).toEqual(range(6, 9));
    } finally {
      await page.close();
    }
  });
});
