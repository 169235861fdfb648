// Builds packages/client/dist, what `npm pack` ships as @inbox-relay/client (its prepack runs this):
// - dist/client, dist/protocol: src/client and the protocol modules it imports, compiled by tsc with
//   their type declarations (the package's entry, for bundlers and Node);
// - dist/browser: the prebuilt minified bundles, ESM and a global IIFE for a <script> tag.
// Fails when the compiled SDK imports any package (the client package has no runtime dependencies:
// `ws` on Node 20 is loaded on demand by a name bundlers and this check do not see).
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { ROOT, buildClientBundles } from './client-bundles.mjs';

const PACKAGE = join(ROOT, 'packages/client');
const DIST = join(PACKAGE, 'dist');

rmSync(DIST, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
execFileSync(process.execPath, [tsc, '-p', join(PACKAGE, 'tsconfig.json')], { stdio: 'inherit' });

// Every import of the compiled code must be relative (./ or ../): anything else would be a dependency.
const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;
function* files(dir) {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* files(path);
    else if (/\.(js|d\.ts)$/.test(entry.name)) yield path;
  }
}
const bare = [];
for (const file of files(DIST)) {
  for (const match of readFileSync(file, 'utf8').matchAll(IMPORT)) {
    const specifier = match[1] ?? match[2];
    if (!specifier.startsWith('./') && !specifier.startsWith('../')) bare.push(`${file.slice(PACKAGE.length + 1)} imports ${specifier}`);
  }
}
if (bare.length > 0) {
  console.error(`build-client-package: the client package must not depend on other packages:\n  ${bare.join('\n  ')}`);
  process.exit(1);
}

for (const bundle of await buildClientBundles({ outdir: join(DIST, 'browser') })) {
  console.log(`dist/browser/${bundle.file}: ${bundle.minBytes} bytes minified, ${bundle.gzipBytes} gzipped`);
}
