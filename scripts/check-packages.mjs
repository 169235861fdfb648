// Packs both packages as `npm publish` would (their prepack builds them) and lints the tarballs:
// - publint --strict: package.json fields (exports, main, types, files) against the files shipped;
// - attw (Are the Types Wrong): every entry resolves to JavaScript and types under node10 (through
//   `types` and typesVersions), node16 from ESM and from CJS, and bundlers.
// Both packages are ES modules only. attw's rule cjs-resolves-to-esm is ignored because it reports
// exactly that: `require()` of these packages works on Node >= 20.19 and >= 22.12 (require of
// synchronous ES modules; test/integration/package-install.test.ts requires every entry), and
// TypeScript >= 5.8 types it under module nodenext, but attw 0.18 analyses with TypeScript 5.6.
// Usage: npm run check:package
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './client-bundles.mjs';

const PACKAGES = [ROOT, join(ROOT, 'packages/client')];

/** The path of a dev dependency's command (node_modules/.bin is on PATH only under `npm run`). */
function bin(pkg, name) {
  const manifest = JSON.parse(readFileSync(join(ROOT, 'node_modules', pkg, 'package.json'), 'utf8'));
  const path = typeof manifest.bin === 'string' ? manifest.bin : manifest.bin[name];
  return join(ROOT, 'node_modules', pkg, path);
}

const run = (args, cwd) => execFileSync(process.execPath, args, { cwd, stdio: 'inherit' });
const npm = (args, cwd) => execFileSync('npm', args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] });

const out = mkdtempSync(join(tmpdir(), 'inbox-relay-pack-'));
let failed = false;
try {
  for (const dir of PACKAGES) {
    const before = new Set(readdirSync(out));
    npm(['pack', '--pack-destination', out], dir);
    const tarball = readdirSync(out).find((file) => !before.has(file) && file.endsWith('.tgz'));
    if (!tarball) throw new Error(`npm pack in ${dir} wrote no tarball`);
    const path = join(out, tarball);
    try {
      run([bin('publint', 'publint'), 'run', path, '--strict']);
      // Both packages ship their own types: nothing to look up in DefinitelyTyped (and no registry request).
      run([
        bin('@arethetypeswrong/cli', 'attw'),
        path,
        '--no-definitely-typed',
        '--ignore-rules',
        'cjs-resolves-to-esm',
        '--format',
        'table-flipped',
      ]);
    } catch {
      failed = true;
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
if (failed) {
  console.error('check-packages: publint or attw found problems (above)');
  process.exitCode = 1;
}
