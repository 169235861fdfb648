/**
 * The packages as an application installs them: `inbox-relay` and `@inbox-relay/client` packed
 * into tarballs, installed into two temporary projects (a web app that installs the client only,
 * and a Node service that installs the relay), then used from the outside:
 * - the client installs alone: no other package comes with it;
 * - every entry imports from ESM and from CJS (`require`, Node >= 20.19) with the exports of its
 *   source module, and the producer entry exports RelayError and ErrorCode, the same ones as the
 *   main entry;
 * - the SDK's types compile in a consumer with no @types at all, under moduleResolution node10
 *   (typesVersions, `types`) and nodenext, from ESM and from CJS;
 * - esbuild bundles the SDK for browsers from either package with nothing of zod, amqplib,
 *   ioredis, pino or ws, and the prebuilt bundles the client ships load (ESM import, IIFE global).
 * The relay's dist/ is built by the global setup (scripts/build-if-needed.mjs), so its tarball is
 * packed without running prepack again; the client's is packed as `npm publish` packs it (its
 * prepack builds it). `npm run check:package` packs both with prepack. Installs prefer npm's
 * cache: every dependency of the relay is there once `npm ci` ran.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { createContext, runInContext } from 'node:vm';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CLIENT_DIR = join(ROOT, 'packages/client');
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc');

/** Server packages a browser bundle must never contain. */
const SERVER_PACKAGES = /node_modules[\\/](zod|amqplib|ioredis|pino|ws)[\\/]/;

/** The public entries and the source module each one is built from. */
const RELAY_ENTRIES: Record<string, string> = {
  'inbox-relay': '../../src/index.js',
  'inbox-relay/client': '../../src/client/index.js',
  'inbox-relay/protocol': '../../src/protocol/index.js',
  'inbox-relay/producer': '../../src/producer.js',
};
const CLIENT_ENTRIES: Record<string, string> = { '@inbox-relay/client': '../../src/client/index.js' };

async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run('npm', args, { cwd, maxBuffer: 16 << 20 });
  return stdout;
}

async function node(args: string[], cwd: string): Promise<string> {
  const { stdout } = await run(process.execPath, args, { cwd, maxBuffer: 16 << 20 });
  return stdout;
}

/** Packs the package in `dir` into `out` and returns the tarball's path. */
async function pack(dir: string, out: string, ignoreScripts: boolean): Promise<string> {
  const before = new Set(readdirSync(out));
  await npm(['pack', '--pack-destination', out, ...(ignoreScripts ? ['--ignore-scripts'] : [])], dir);
  const tarball = readdirSync(out).find((file) => !before.has(file) && file.endsWith('.tgz'));
  if (!tarball) throw new Error(`npm pack in ${dir} wrote no tarball`);
  return join(out, tarball);
}

/** A new ESM project in `dir` with the tarballs installed. */
async function project(dir: string, tarballs: string[]): Promise<string> {
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  await npm(['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...tarballs], dir);
  return dir;
}

/** The packages npm installed into a project (from its hidden lockfile), by path. */
function installed(dir: string): string[] {
  const lock = JSON.parse(readFileSync(join(dir, 'node_modules/.package-lock.json'), 'utf8')) as { packages: object };
  return Object.keys(lock.packages).sort();
}

const ESM_CHECK = `
const out = {};
for (const spec of process.argv.slice(2)) out[spec] = Object.keys(await import(spec)).sort();
console.log(JSON.stringify(out));
`;
const CJS_CHECK = `
const out = {};
for (const spec of process.argv.slice(2)) out[spec] = Object.keys(require(spec)).filter((k) => k !== '__esModule').sort();
console.log(JSON.stringify(out));
`;

/** Each entry's export names, as an ESM import and as a CJS require in the project see them. */
async function exportNames(dir: string, entries: string[]): Promise<{ esm: Record<string, string[]>; cjs: Record<string, string[]> }> {
  writeFileSync(join(dir, 'esm-check.mjs'), ESM_CHECK);
  writeFileSync(join(dir, 'cjs-check.cjs'), CJS_CHECK);
  const esm = JSON.parse(await node(['esm-check.mjs', ...entries], dir)) as Record<string, string[]>;
  const cjs = JSON.parse(await node(['cjs-check.cjs', ...entries], dir)) as Record<string, string[]>;
  return { esm, cjs };
}

/** The export names of the source modules the entries are built from. */
async function sourceNames(entries: Record<string, string>): Promise<Record<string, string[]>> {
  const names: Record<string, string[]> = {};
  for (const [entry, source] of Object.entries(entries)) names[entry] = Object.keys((await import(source)) as object).sort();
  return names;
}

/** Bundles `code` for browsers from the project's node_modules; returns the files that went in. */
async function bundleForBrowser(dir: string, code: string): Promise<string[]> {
  const result = await build({
    stdin: { contents: code, resolveDir: dir, loader: 'js' },
    absWorkingDir: dir,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    write: false,
    metafile: true,
    logLevel: 'silent',
  });
  return Object.keys(result.metafile.inputs);
}

/**
 * Type-checks `files` (paths under `dir`, each resolving packages from its own project) with the
 * given compiler options and no @types. The default library is not checked: it is not ours.
 */
async function typecheck(dir: string, name: string, files: string[], options: Record<string, unknown>): Promise<void> {
  const compilerOptions = { strict: true, noEmit: true, skipDefaultLibCheck: true, types: [], target: 'ES2022', lib: ['ES2022', 'DOM'] };
  writeFileSync(join(dir, `tsconfig.${name}.json`), JSON.stringify({ compilerOptions: { ...compilerOptions, ...options }, files }));
  try {
    await node([TSC, '-p', `tsconfig.${name}.json`], dir);
  } catch (error) {
    const { stdout } = error as { stdout?: string };
    throw new Error(`tsc (${name}) failed on the consumers:\n${stdout ?? String(error)}`, { cause: error });
  }
}

describe('packages installed from their tarballs', () => {
  let work: string;
  let web: string;
  let service: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'inbox-relay-install-'));
    const out = join(work, 'pack');
    mkdirSync(out);
    const relayTarball = await pack(ROOT, out, true);
    const clientTarball = await pack(CLIENT_DIR, out, false);
    [web, service] = await Promise.all([project(join(work, 'web'), [clientTarball]), project(join(work, 'service'), [relayTarball])]);
  }, 180_000);

  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('installs the client alone, with its README, LICENSE and no server code', () => {
    expect(installed(web)).toEqual(['node_modules/@inbox-relay/client']);
    const dir = join(web, 'node_modules/@inbox-relay/client');
    expect(readdirSync(dir).sort()).toEqual(['LICENSE', 'README.md', 'dist', 'package.json']);
    expect(readdirSync(join(dir, 'dist')).sort()).toEqual(['browser', 'client', 'protocol']);
    // frames.ts holds the relay's zod schemas: the client package carries only the zod-free protocol modules.
    expect(readdirSync(join(dir, 'dist/protocol')).filter((file) => file.endsWith('.js'))).not.toContain('frames.js');
    const relay = join(service, 'node_modules/inbox-relay');
    expect(existsSync(join(relay, 'LICENSE'))).toBe(true);
    expect(existsSync(join(relay, 'dist/src/index.js'))).toBe(true);
  });

  it('imports every entry from ESM and from CJS, with the exports of its source', async () => {
    const [relay, client] = await Promise.all([
      exportNames(service, Object.keys(RELAY_ENTRIES)),
      exportNames(web, Object.keys(CLIENT_ENTRIES)),
    ]);
    const expected = { ...(await sourceNames(RELAY_ENTRIES)), ...(await sourceNames(CLIENT_ENTRIES)) };
    expect({ ...relay.esm, ...client.esm }).toEqual(expected);
    expect({ ...relay.cjs, ...client.cjs }).toEqual(expected);
    expect(expected['inbox-relay/producer']).toEqual(expect.arrayContaining(['Producer', 'RelayError', 'ErrorCode', 'isRelayError']));
  });

  it('exports the same RelayError and ErrorCode from the producer entry as from the main one', async () => {
    const check = `
      import * as main from 'inbox-relay';
      import * as producer from 'inbox-relay/producer';
      const error = new producer.RelayError(producer.ErrorCode.publishNacked, 'x');
      console.log(JSON.stringify([producer.RelayError === main.RelayError, main.isRelayError(error, main.ErrorCode.publishNacked)]));`;
    writeFileSync(join(service, 'same-error.mjs'), check);
    expect(JSON.parse(await node(['same-error.mjs'], service))).toEqual([true, true]);
  });

  it('type-checks a consumer of the SDK with no @types, under node10 and nodenext, from ESM and CJS', async () => {
    const consumer = (spec: string) =>
      `import { InboxClient, type InboxMessage } from '${spec}';\n` +
      `const client = new InboxClient({ url: 'ws://127.0.0.1:8080', token: () => 't' });\n` +
      `client.on('message', (message: InboxMessage) => { const seq: number = message.seq; void seq; });\n` +
      `export { client };\n`;
    const files: string[] = [];
    for (const [dir, spec] of [
      ['web', '@inbox-relay/client'],
      ['service', 'inbox-relay/client'],
    ] as const) {
      // .ts in a "type": "module" project is ESM; .cts is CommonJS (its imports become require calls).
      writeFileSync(join(work, dir, 'consumer.ts'), consumer(spec));
      writeFileSync(join(work, dir, 'consumer.cts'), consumer(spec));
      files.push(`${dir}/consumer.ts`, `${dir}/consumer.cts`);
    }
    // node10 knows neither exports nor .cts: `types` and typesVersions must lead it to the declarations.
    await typecheck(
      work,
      'node10',
      files.filter((file) => file.endsWith('.ts')),
      { module: 'commonjs', moduleResolution: 'node10' },
    );
    await typecheck(work, 'nodenext', files, { module: 'nodenext', moduleResolution: 'nodenext' });
  });

  it('bundles the SDK for browsers from either package without any server package', async () => {
    const fromClient = await bundleForBrowser(web, "export { InboxClient } from '@inbox-relay/client';");
    const fromRelay = await bundleForBrowser(service, "export { InboxClient } from 'inbox-relay/client';");
    for (const inputs of [fromClient, fromRelay]) {
      expect(inputs.filter((input) => SERVER_PACKAGES.test(input))).toEqual([]);
      expect(inputs.some((input) => /inbox-client\.js$/.test(input))).toBe(true);
    }
    // The service project has zod, amqplib, ioredis, pino and ws installed: the check above means something there.
    expect(installed(service)).toEqual(expect.arrayContaining(['node_modules/zod', 'node_modules/ws', 'node_modules/pino']));
  });

  it('ships prebuilt bundles that load: ESM by import, IIFE as the InboxRelayClient global', async () => {
    const browser = join(web, 'node_modules/@inbox-relay/client/dist/browser');
    const expected = (await sourceNames(CLIENT_ENTRIES))['@inbox-relay/client'];
    const esm = (await import(pathToFileURL(join(browser, 'inbox-relay-client.js')).href)) as object;
    expect(Object.keys(esm).sort()).toEqual(expected);
    const page = createContext({ URL });
    runInContext(readFileSync(join(browser, 'inbox-relay-client.global.js'), 'utf8'), page);
    const global = (page as { InboxRelayClient?: object }).InboxRelayClient;
    expect(Object.keys(global ?? {}).sort()).toEqual(expected);
  });
});
