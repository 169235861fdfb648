/**
 * `npm run token -- <userId> [ttlSeconds] [--kid <kid>]`: prints a development token signed with
 * JWT_SECRET, or with the HS* key `kid` of JWT_KEYS_FILE, so that any WebSocket client can
 * connect. Kept as an entry point of its own; it is `inbox-relay token <userId> --ttl <ttlSeconds>
 * [--kid <kid>]`. Not for production key management.
 */
import { processIo } from './io.js';
import { runCli } from './run.js';

const args = process.argv.slice(2);
// The old positional ttl (`token <user> 600`) becomes --ttl; options pass through as they are.
const ttlAt = args.findIndex((arg, index) => index > 0 && /^\d+$/.test(arg) && !(args[index - 1] ?? '').startsWith('--'));
const argv = ['token', ...(ttlAt < 0 ? args : [...args.slice(0, ttlAt), '--ttl', ...args.slice(ttlAt)])];
const code = await runCli(argv, processIo());
if (code !== 'running') process.exitCode = code;
