// Builds dist/ when it is missing or older than any source file, so `npm start` always runs current code.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

const marker = 'dist/src/main.js';
const sources = ['src', 'bench'].filter((dir) => existsSync(dir));
const stale = !existsSync(marker) || sources.some((dir) => newest(dir) > statSync(marker).mtimeMs);
if (stale) execFileSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
