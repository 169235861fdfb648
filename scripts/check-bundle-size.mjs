// Fails when a browser bundle of the client SDK passes its gzipped budget, or takes in anything but
// src/client and src/protocol (the package promises no runtime dependencies). `npm run lint` runs it.
import { GZIP_BUDGET_BYTES, buildClientBundles } from './client-bundles.mjs';

const kb = (bytes) => `${(bytes / 1024).toFixed(1)} KB`;
const problems = [];
for (const bundle of await buildClientBundles()) {
  console.log(`${bundle.file}: ${kb(bundle.minBytes)} minified, ${kb(bundle.gzipBytes)} gzipped (budget ${kb(GZIP_BUDGET_BYTES)})`);
  if (bundle.gzipBytes > GZIP_BUDGET_BYTES) {
    problems.push(`${bundle.file} is ${bundle.gzipBytes} bytes gzipped, over the budget of ${GZIP_BUDGET_BYTES}`);
  }
  const foreign = bundle.inputs.filter((input) => !/^src\/(client|protocol)\//.test(input));
  if (foreign.length > 0) {
    const shown = foreign.slice(0, 3).join(', ') + (foreign.length > 3 ? ` and ${foreign.length - 3} more` : '');
    problems.push(`${bundle.file} bundles files outside src/client and src/protocol: ${shown}`);
  }
}
for (const problem of problems) console.error(`check-bundle-size: ${problem}`);
process.exitCode = problems.length > 0 ? 1 : 0;
