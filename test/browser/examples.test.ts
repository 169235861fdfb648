/**
 * The examples in examples/, built and run in chromium against the real relay: the plain page
 * that loads the SDK's global bundle with a <script> tag, and the React page on the useInbox hook.
 * Each shows a published message; the React page also shows a topic message with its topic, the
 * user's presence from the example backend (examples/react/backend.js, mounted on the test's
 * server), and why the client gave up on a refused token.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/amqp/producer.js';
// @ts-expect-error: the example is plain JavaScript, without types
import { createBackend } from '../../examples/react/backend.js';
import { TEST_SECRET, startTestRelay, testConfig, testProducer, token, uid, type TestRelay } from '../helpers/relay.js';
import { SKIP_NOTE, bundleClient, hasChromium, launchChromium } from './harness.js';

const file = (path: string): string => fileURLToPath(new URL(`../../${path}`, import.meta.url));

/** The React example bundled for browsers, with the SDK from source (as @inbox-relay/client). */
async function bundleReactExample(): Promise<string> {
  const result = await build({
    entryPoints: [file('examples/react/main.js')],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'es2022',
    write: false,
    logLevel: 'silent',
    define: { 'process.env.NODE_ENV': '"production"' },
    alias: { '@inbox-relay/client': file('src/client/index.ts') },
  });
  const output = result.outputFiles[0];
  if (!output) throw new Error('esbuild produced no output');
  return output.text;
}

const REACT_PAGE = `<!doctype html><html><head><meta charset="utf-8"><title>useInbox</title></head>
<body><div id="root"></div><script src="/react.js"></script></body></html>`;

describe(`examples in chromium against the relay${SKIP_NOTE}`, () => {
  let browser: Browser;
  let relay: TestRelay;
  let producer: Producer;
  let backendProducer: Producer;
  let origin = '';
  let close: () => Promise<void> = async () => undefined;

  beforeAll(async () => {
    if (!hasChromium) return;
    const routes = new Map<string, { type: string; body: string }>([
      ['/browser/', { type: 'text/html', body: readFileSync(file('examples/browser/index.html'), 'utf8') }],
      ['/browser/inbox-relay-client.global.js', { type: 'text/javascript', body: (await bundleClient()).code }],
      ['/react/', { type: 'text/html', body: REACT_PAGE }],
      ['/react.js', { type: 'text/javascript', body: await bundleReactExample() }],
    ]);
    let backend: (request: unknown, response: unknown) => boolean = () => false;
    const server = createServer((request, response) => {
      if (backend(request, response)) return;
      const route = routes.get((request.url ?? '').split('?')[0] ?? '');
      if (!route) return response.writeHead(404).end();
      response.writeHead(200, { 'Content-Type': `${route.type}; charset=utf-8` }).end(route.body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    close = () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    browser = await launchChromium();
    relay = await startTestRelay(testConfig({ ALLOWED_ORIGINS: origin }));
    producer = testProducer(relay.config);
    backendProducer = new Producer({
      url: relay.config.rabbitmqUrl,
      redis: relay.config.redis,
      redisKeyPrefix: relay.config.redisKeyPrefix,
    });
    backend = createBackend({ producer: backendProducer, jwtSecret: TEST_SECRET }) as typeof backend;
  });
  afterAll(async () => {
    if (!hasChromium) return;
    await producer?.close();
    await backendProducer?.close();
    await relay?.stop();
    await browser?.close();
    await close();
  });

  const pageUrl = (path: string, query: Record<string, string>): string => `${origin}${path}?${new URLSearchParams(query).toString()}`;
  const wsUrl = (): string => relay.url.replace(/\/v1\/stream$/, '');

  it.runIf(hasChromium)('the script-tag page shows a published message', async () => {
    const user = uid('ex-browser');
    const page = await browser.newPage();
    await page.goto(pageUrl('/browser/', { token: token(user), url: wsUrl(), positionKey: user }));
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open', undefined, { timeout: 20_000 });
    await producer.publish(user, { hello: 'script tag' });
    await page.waitForFunction(() => document.querySelectorAll('#messages li').length === 1, undefined, { timeout: 20_000 });
    expect(await page.textContent('#messages li')).toBe('1 {"hello":"script tag"}');
    await page.close();
  });

  it.runIf(hasChromium)('the React page on useInbox shows published messages in order', async () => {
    const user = uid('ex-react');
    const page = await browser.newPage();
    await page.goto(pageUrl('/react/', { token: token(user), url: wsUrl() }));
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open', undefined, { timeout: 20_000 });
    for (let n = 1; n <= 3; n += 1) await producer.publish(user, { n });
    await page.waitForFunction(() => document.querySelectorAll('#messages li').length === 3, undefined, { timeout: 20_000 });
    expect(await page.$$eval('#messages li', (items) => items.map((item) => item.textContent))).toEqual([
      '1 {"n":1}',
      '2 {"n":2}',
      '3 {"n":3}',
    ]);
    await page.close();
  });

  it.runIf(hasChromium)('the React page shows a topic message with its topic, and where the user is connected', async () => {
    const user = uid('ex-topic');
    const topic = `scores.${user.replace(/[^A-Za-z0-9_-]/g, '-')}.goal`;
    await producer.follow(user, topic.replace(/\.goal$/, '.*'));
    const page = await browser.newPage();
    await page.goto(pageUrl('/react/', { token: token(user), url: wsUrl() }));
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open', undefined, { timeout: 20_000 });
    await page.waitForFunction(
      () => document.getElementById('presence')?.textContent === 'online on 1 connection: react example',
      undefined,
      {
        timeout: 20_000,
      },
    );
    await producer.publish(user, { direct: 1 });
    await producer.publishTopic(topic, { score: '2-1' });
    await page.waitForFunction(() => document.querySelectorAll('#messages li').length === 2, undefined, { timeout: 20_000 });
    expect(await page.$$eval('#messages li', (items) => items.map((item) => item.textContent))).toEqual([
      '1 {"direct":1}',
      `2 [${topic}] {"score":"2-1"}`,
    ]);
    await page.close();
  });

  it.runIf(hasChromium)('the React page shows why the client gave up on a refused token', async () => {
    const page = await browser.newPage();
    await page.goto(pageUrl('/react/', { token: 'not-a-token', url: wsUrl() }));
    await page.waitForSelector('#error', { timeout: 20_000 });
    expect(await page.textContent('#error')).toMatch(/^RELAY_ERR_TERMINAL_CLOSE: /);
    expect(await page.textContent('#state')).toBe('closed');
    await page.close();
  });
});
