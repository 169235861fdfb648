/**
 * Browser harness: bundles the client SDK into an IIFE with esbuild, serves it from a page on
 * 127.0.0.1, and drives Debian's chromium through playwright-core.
 */
import { existsSync } from 'node:fs';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM_PATH = '/usr/bin/chromium';
/** False on machines without Debian's chromium: browser tests are skipped there, saying why. */
export const hasChromium = existsSync(CHROMIUM_PATH);
export const SKIP_NOTE = hasChromium ? '' : ` [skipped: ${CHROMIUM_PATH} not found]`;

const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** The global the IIFE bundle assigns the SDK's exports to. */
export const GLOBAL_NAME = 'InboxRelayClient';

const ENTRY = fileURLToPath(new URL('../../src/client/index.ts', import.meta.url));

export interface ClientBundle {
  code: string;
  /** Source files that went into the bundle (relative paths, as esbuild reports them). */
  inputs: string[];
}

/** Bundles `src/client/index.ts` for browsers, as an IIFE exposing {@link GLOBAL_NAME}. */
export async function bundleClient(): Promise<ClientBundle> {
  const result = await build({
    entryPoints: [ENTRY],
    bundle: true,
    format: 'iife',
    globalName: GLOBAL_NAME,
    platform: 'browser',
    target: 'es2022',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  const output = result.outputFiles[0];
  if (!output) throw new Error('esbuild produced no output');
  return { code: output.text, inputs: Object.keys(result.metafile.inputs) };
}

export interface PageServer {
  /** The page that loads the bundle. */
  url: string;
  close(): Promise<void>;
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>inbox-relay client</title>
<script src="/client.js"></script></head><body></body></html>`;

/** Serves the page and the bundle on 127.0.0.1 (a real origin, so localStorage works). */
export async function servePage(bundle: string): Promise<PageServer> {
  const server = createServer((request, response) => {
    if (request.url === '/client.js') {
      response.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' }).end(bundle);
    } else if (request.url === '/') {
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
    } else {
      response.writeHead(404).end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
}
