/**
 * `npm run token -- <userId> [ttlSeconds]`: prints a development token signed with JWT_SECRET,
 * so that any WebSocket client can connect. Kept as an entry point of its own; it is
 * `inbox-relay token <userId> --ttl <ttlSeconds>`. Not for production key management.
 */
import { processIo } from './io.js';
import { runCli } from './run.js';

const [user, ttl, ...rest] = process.argv.slice(2);
const argv = ['token', ...(user === undefined ? [] : [user]), ...(ttl === undefined ? [] : ['--ttl', ttl]), ...rest];
const code = await runCli(argv, processIo());
if (code !== 'running') process.exitCode = code;
