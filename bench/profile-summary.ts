/** `node dist/bench/profile-summary.js FILE.cpuprofile...`: where a relay's CPU time went. */
import { formatProfile, summariseProfile } from './report/cpu-profile.js';

const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile...\n');
  process.exit(2);
}
for (const file of files) process.stdout.write(`${formatProfile(summariseProfile(file))}\n\n`);
