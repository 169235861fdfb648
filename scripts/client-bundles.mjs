// The client SDK's prebuilt browser bundles, built one way for the package (build-client-package.mjs)
// and for the size budget (check-bundle-size.mjs), so the budget is checked on what ships.
import { mkdirSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLIENT_ENTRY = fileURLToPath(new URL('../src/client/index.ts', import.meta.url));

/** The global a `<script>` tag that loads the IIFE bundle defines. */
export const GLOBAL_NAME = 'InboxRelayClient';

/** Budget for each bundle, minified and gzipped (docs: packages/client/README.md "Size"). */
export const GZIP_BUDGET_BYTES = 12 * 1024;

/** The bundles the package ships in dist/browser/. */
export const BUNDLES = [
  { file: 'inbox-relay-client.js', format: 'esm' },
  { file: 'inbox-relay-client.global.js', format: 'iife' },
];

/**
 * Builds every bundle, minified for browsers (ES2022). With `outdir` the bundles and their source
 * maps are written there; without, they stay in memory. Returns, per bundle, its size minified and
 * gzipped and the source files that went into it (paths relative to the repository).
 */
export async function buildClientBundles({ outdir } = {}) {
  const results = [];
  for (const { file, format } of BUNDLES) {
    const result = await build({
      entryPoints: [CLIENT_ENTRY],
      absWorkingDir: ROOT,
      bundle: true,
      format,
      globalName: format === 'iife' ? GLOBAL_NAME : undefined,
      platform: 'browser',
      target: 'es2022',
      minify: true,
      // Always linked, so the sizes measured without writing include the comment that names the map.
      sourcemap: 'linked',
      legalComments: 'none',
      outfile: join(outdir ?? ROOT, file),
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const code = result.outputFiles.find((out) => basename(out.path) === file);
    if (!code) throw new Error(`esbuild produced no ${file}`);
    if (outdir !== undefined) {
      mkdirSync(outdir, { recursive: true });
      for (const out of result.outputFiles) writeFileSync(out.path, out.contents);
    }
    results.push({
      file,
      format,
      minBytes: code.contents.length,
      gzipBytes: gzipSync(code.contents, { level: 9 }).length,
      inputs: Object.keys(result.metafile.inputs),
    });
  }
  return results;
}
